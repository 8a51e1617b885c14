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
#define FUSEDLR_HAS_LARGE_ARGS 1
#define FUSEDLR_DEVICE_TAKES_LARGE_ARGS() (::fusedlr::fake_cuda::state().large_args)

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
// 32 KB kernel parameters: CUDA 12.1+ toolkits (older ones refuse a kernel whose parameters pass
// 4 KB, so its kernels are not compiled), on devices of compute capability 7.0+ with a 12.1+
// driver (checked at run time, per device).
#if defined(CUDART_VERSION) && CUDART_VERSION >= 12010
#define FUSEDLR_HAS_LARGE_ARGS 1
#else
#define FUSEDLR_HAS_LARGE_ARGS 0
#endif
#define FUSEDLR_DEVICE_TAKES_LARGE_ARGS() (::fusedlr::cuda::device_takes_large_args())

#include <atomic>

namespace fusedlr {
namespace cuda {
inline const char* launch_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

// Whether the current device and the driver take 32 KB kernel parameters; cached per device
// (0: not asked yet, 1: no, 2: yes). A failed query answers no and leaves no error behind.
inline bool device_takes_large_args() {
  constexpr int kDevices = 64;
  static std::atomic<int> cache[kDevices];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  if (dev >= 0 && dev < kDevices) {
    const int known = cache[dev].load(std::memory_order_relaxed);
    if (known != 0) return known == 2;
  }
  int driver = 0, major = 0;
  const bool ok =
      cudaDriverGetVersion(&driver) == cudaSuccess &&
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
      driver >= 12010 && major >= 7;
  if (!ok) cudaGetLastError();
  if (dev >= 0 && dev < kDevices) cache[dev].store(ok ? 2 : 1, std::memory_order_relaxed);
  return ok;
}
}  // namespace cuda
}  // namespace fusedlr

#endif
