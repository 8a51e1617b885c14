// Plain C++ interface between the CUDA launchers (update_cuda.cpp, torch side)
// and the kernels (kernels.cu, CUDA runtime only). No torch and no CUDA
// headers: pointers are raw device pointers, the stream is a cudaStream_t
// passed as void*, and errors come back as cudaError_t values (0 = success).
#pragma once

#include <cstdint>

// Compiled on the CPU against the fake runtime (FUSEDLR_FAKE_CUDA, csrc/fake_cuda/), the CUDA
// path's host code lives in an inline namespace: the same source names, other symbols, so the fake
// and the real kernels.cu / update_cuda.cpp can be linked into one library.
#if defined(FUSEDLR_FAKE_CUDA)
#define FUSEDLR_CUDA_ABI_BEGIN inline namespace fake_cuda_abi {
#define FUSEDLR_CUDA_ABI_END }
#else
#define FUSEDLR_CUDA_ABI_BEGIN
#define FUSEDLR_CUDA_ABI_END
#endif

namespace fusedlr {
FUSEDLR_CUDA_ABI_BEGIN
namespace cuda {

enum class ElemType : int { kFloat = 0, kDouble = 1, kHalf = 2, kBFloat16 = 3 };

// One tensor of an update call. ptr = param, grad, then the state pointers:
// SGD (momentum_buffer or null); Adam (exp_avg, exp_avg_sq, max_exp_avg_sq or null).
// master_weights in one pass: float32 master, 16-bit grad, 16-bit param, then the state.
struct UpdateTensor {
  void* ptr[6];
  int64_t numel;
  float* step;
  int32_t group;
};

// Device pointers shared by all tensors of one call.
struct UpdateCall {
  const double* hparams;       // [groups, 16]
  const double* group_lr;      // [groups, 2]
  const float* grad_scale;     // null: none (or a float64 one, below)
  const float* found_inf;      // null: none
  const double* grad_scale64;  // a float64 grad_scale, read instead of grad_scale when set
  void* stream;                // cudaStream_t
  int arg_layout;              // mt::ArgLayout: 0 = classic 4 KB kernel arguments, 1 = 32 KB
};

// The kernel-argument layout for launches on the current device: 1 (32 KB: 8x as many tensors
// per launch) when this build's toolkit has it (CUDA 12.1+) and the device and driver take it
// (compute capability >= 7.0, driver >= 12.1), else 0 (the classic 4 KB). FUSEDLR_KERNEL_ARGS=
// classic in the environment (read once) forces 0. Cached per device.
int kernel_arg_layout();

// Whether this build has the 32 KB layout's kernels (toolkit CUDA 12.1 or newer).
bool large_args_compiled();

// Update kernels over n tensors of one element type (states: float for
// float/half/bfloat16 params, double for double). Steps are only read.
int launch_sgd_update(ElemType type, const UpdateTensor* tensors, int64_t n,
                      const UpdateCall& call);
int launch_adam_update(ElemType type, const UpdateTensor* tensors, int64_t n,
                       const UpdateCall& call);

// Checks, before a call's first launch, that the update kernel of `type` (Adam when
// `adam`, else SGD) and the step kernel, in `arg_layout`, can be launched on the current device:
// cudaFuncGetAttributes loads them, so a missing kernel image or a failed PTX JIT shows
// here, and their thread limit must admit the launch shape. The launchers check every
// element type of a call first, so a call refused for these reasons launched nothing.
// Clears the error it reports (it is not sticky). 0 = success.
int check_update_kernels(ElemType type, bool adam, int arg_layout);

// master_weights in one pass (type: the 16-bit param type, kHalf or kBFloat16; tensors as
// UpdateTensor's master layout). Steps are only read.
int launch_sgd_master_update(ElemType type, const UpdateTensor* tensors, int64_t n,
                             const UpdateCall& call);
int launch_adam_master_update(ElemType type, const UpdateTensor* tensors, int64_t n,
                              const UpdateCall& call);
// check_update_kernels for the master kernels (and the step kernel).
int check_master_kernels(ElemType type, bool adam, int arg_layout);

// Advances the steps of n tensors after every update launch of the call
// (SGD: only where has_state[i] and the group's momentum is nonzero).
int launch_step_increment(float* const* steps, const int32_t* groups, const uint8_t* has_state,
                          int64_t n, bool sgd, const UpdateCall& call);

// out[g] = eval_group(...) for g < groups; counter is a device int64 scalar.
int launch_eval_schedule(const double* program, const double* hparams, const double* lr_scale,
                         const int64_t* counter, int64_t groups, double* out, void* stream);

const char* error_string(int code);

}  // namespace cuda
FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr
