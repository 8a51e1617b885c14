// The two pieces of c10/cuda that update_cuda.cpp uses, for its FUSEDLR_FAKE_CUDA build on the
// CPU: a device guard (counted) and the current stream (the one the tests set in the fake
// runtime's state; fusedlr::fake_cuda_set_stream).
#pragma once

#include <c10/core/Device.h>

#include "cuda/fake_runtime.h"

namespace fusedlr {
namespace fake_c10_cuda {

struct CUDAGuard {
  explicit CUDAGuard(const c10::Device&) { ++fake_cuda::state().guards; }
};

struct CUDAStream {
  cudaStream_t s;
  cudaStream_t stream() const { return s; }
};

inline CUDAStream getCurrentCUDAStream(c10::DeviceIndex) {
  return CUDAStream{static_cast<cudaStream_t>(fake_cuda::state().current_stream)};
}

}  // namespace fake_c10_cuda
}  // namespace fusedlr
