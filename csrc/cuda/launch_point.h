// The one launch point of the CUDA kernels of csrc/cuda/*.cu:
//
//   cudaError_t err = FUSEDLR_LAUNCH(kernel, grid, block, smem, stream, args...);
//
// On a CUDA build it is kernel<<<grid, block, smem, stream>>>(args...) followed by
// cudaGetLastError(). Compiled on the CPU with FUSEDLR_FAKE_CUDA (csrc/fake_cuda/), it is
// fake_cuda::launch (cuda/fake_runtime.h): the launch is recorded (kernel, grid, block, smem,
// stream, kernel-argument bytes), checked as the runtime would, and the __global__ function runs
// on the CPU over every (block, thread), so the host code around the launches is testable
// without a GPU. launch_error_string(code) is cudaGetErrorString, or the fake's;
// FUSEDLR_FUNC_ATTRIBUTES(&attr, kernel) is cudaFuncGetAttributes and FUSEDLR_CLEAR_ERROR() is
// cudaGetLastError() (to reset an error), or the fake's (fake_cuda::func_attributes, clear_error).
#pragma once

#include "cuda/launch.h"

#if defined(FUSEDLR_FAKE_CUDA)

#include "cuda/fake_runtime.h"

#define FUSEDLR_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::fusedlr::fake_cuda::launch(#kernel, kernel, dim3(grid), dim3(block), smem, stream, __VA_ARGS__)
#define FUSEDLR_FUNC_ATTRIBUTES(attr, kernel) ::fusedlr::fake_cuda::func_attributes(attr, kernel)
#define FUSEDLR_CLEAR_ERROR() ::fusedlr::fake_cuda::clear_error()

namespace fusedlr {
FUSEDLR_CUDA_ABI_BEGIN
namespace cuda {
inline const char* launch_error_string(int code) { return fake_cuda::error_string(code); }
}  // namespace cuda
FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr

#else

#include <cuda_runtime.h>

#define FUSEDLR_LAUNCH(kernel, grid, block, smem, stream, ...) \
  (kernel<<<grid, block, smem, stream>>>(__VA_ARGS__), cudaGetLastError())
#define FUSEDLR_FUNC_ATTRIBUTES(attr, kernel) cudaFuncGetAttributes(attr, kernel)
#define FUSEDLR_CLEAR_ERROR() cudaGetLastError()

namespace fusedlr {
namespace cuda {
inline const char* launch_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
}  // namespace cuda
}  // namespace fusedlr

#endif
