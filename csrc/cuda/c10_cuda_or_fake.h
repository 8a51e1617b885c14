// What the CUDA launchers (update_cuda.cpp, schedule_free_cuda.cpp) take from c10/cuda, through
// one alias: rt::CUDAGuard and rt::getCurrentCUDAStream, and on_kernel_device(device). On a CUDA
// build they are c10::cuda's and device.is_cuda(); compiled with FUSEDLR_FAKE_CUDA
// (csrc/fake_cuda/) they are the fake runtime's (cuda/fake_c10_cuda.h) and device.is_cpu().
#pragma once

#include <c10/core/Device.h>

#include "cuda/launch.h"

#if defined(FUSEDLR_FAKE_CUDA)

#include "cuda/fake_c10_cuda.h"

namespace fusedlr {
FUSEDLR_CUDA_ABI_BEGIN
namespace rt = fake_c10_cuda;
inline bool on_kernel_device(const c10::Device& d) { return d.is_cpu(); }
FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr

#else

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace fusedlr {
namespace rt = c10::cuda;
inline bool on_kernel_device(const c10::Device& d) { return d.is_cuda(); }
}  // namespace fusedlr

#endif
