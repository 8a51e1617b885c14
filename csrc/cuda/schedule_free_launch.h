// Plain C++ interface between the schedule-free CUDA launchers
// (schedule_free_cuda.cpp, torch side) and kernels (schedule_free_kernels.cu,
// CUDA runtime only); raw device pointers, the stream as void*, cudaError_t
// values back (0 = success).
#pragma once

#include <cstdint>

#include "cuda/launch.h"

namespace fusedlr {
FUSEDLR_CUDA_ABI_BEGIN
namespace cuda {

// One tensor: ptr = y (param), grad, z, v (null when unused); all of one element type.
struct ScheduleFreeTensor {
  void* ptr[4];
  int64_t numel;
  int32_t group;
};

// Update (mode 0) or train/eval switch (1 / 2) of n tensors of one element type.
// state may be null for switches; adam: v pointers are present.
int launch_schedule_free(ElemType type, const ScheduleFreeTensor* tensors, int64_t n,
                         const double* hparams, const double* state, int mode, bool adam,
                         void* stream);

// The per-group scalar pass of a step (schedule_free_prepare_group for g < groups).
int launch_schedule_free_prepare(const double* program, const double* hparams, int64_t groups,
                                 double* state, void* stream);

}  // namespace cuda
FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr
