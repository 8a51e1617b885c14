// CUDA kernels of fusedlr: three-line __global__ wrappers over the block
// bodies of multi_tensor.h, and the launch functions of launch.h. Only the
// CUDA runtime is included (no torch headers), so this file compiles in
// seconds; the launchers in update_cuda.cpp pass raw pointers and the stream.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "cuda/elem_traits_cuda.h"
#include "cuda/launch.h"
#include "cuda/launch_point.h"
#include "multi_tensor.h"

namespace fusedlr {
FUSEDLR_CUDA_ABI_BEGIN

namespace {

// Resident blocks per SM the update kernels are compiled for (the second
// argument of __launch_bounds__): ptxas keeps them within 65536 / (512 * 3) = 42,
// i.e. 40 registers a thread. From the ptxas report (benchmarks/kernels.md): the
// float and 16-bit SGD / Adam kernels fit 3 blocks of 512 threads with no spill
// on sm_80 / sm_90 / sm_100, so a 320-block launch is one wave on A100 (108 SMs)
// and H100 / H200 (132 SMs) where 2 blocks per SM made it 1.48 / 1.21 waves.
// Double params need 58-80 registers and spill when squeezed: 0 leaves their
// bound as plain __launch_bounds__(512) (no .minnctapersm).
template <typename T>
struct MinBlocksPerSm {
  static constexpr int kValue = 3;
};
template <>
struct MinBlocksPerSm<double> {
  static constexpr int kValue = 0;
};

template <typename T, int Layout>
__global__ void __launch_bounds__(mt::kBlockThreads, MinBlocksPerSm<T>::kValue)
    sgd_kernel(const __grid_constant__ mt::TensorListMeta<3, Layout> meta,
               const mt::UpdateArgs args) {
  mt::sgd_block<T>(meta, args, blockIdx.x, threadIdx.x, blockDim.x);
}

template <typename T, int Layout>
__global__ void __launch_bounds__(mt::kBlockThreads, MinBlocksPerSm<T>::kValue)
    adam_kernel(const __grid_constant__ mt::TensorListMeta<5, Layout> meta,
                const mt::UpdateArgs args) {
  mt::adam_block<T>(meta, args, blockIdx.x, threadIdx.x, blockDim.x);
}

template <typename T, int Layout>
__global__ void __launch_bounds__(mt::kBlockThreads, MinBlocksPerSm<T>::kValue)
    sgd_master_kernel(const __grid_constant__ mt::TensorListMeta<4, Layout> meta,
                      const mt::UpdateArgs args) {
  mt::sgd_master_block<T>(meta, args, blockIdx.x, threadIdx.x, blockDim.x);
}

template <typename T, int Layout>
__global__ void __launch_bounds__(mt::kBlockThreads, MinBlocksPerSm<T>::kValue)
    adam_master_kernel(const __grid_constant__ mt::TensorListMeta<6, Layout> meta,
                       const mt::UpdateArgs args) {
  mt::adam_master_block<T>(meta, args, blockIdx.x, threadIdx.x, blockDim.x);
}

template <int Layout>
__global__ void __launch_bounds__(mt::kStepThreads)
    step_kernel(const __grid_constant__ mt::StepMetaT<Layout> meta, const mt::UpdateArgs args,
                bool sgd) {
  mt::step_block(meta, args, sgd, blockIdx.x, threadIdx.x, blockDim.x);
}

__global__ void __launch_bounds__(mt::kEvalThreads)
    eval_schedule_kernel(const double* prog, const double* hparams, const double* lr_scale,
                         const int64_t* counter, int64_t groups, double* out) {
  mt::eval_schedule_block(prog, hparams, lr_scale, counter, groups, out, blockIdx.x, threadIdx.x,
                          blockDim.x);
}

// FUSEDLR_KERNEL_ARGS=classic (or 4096) in the environment, read once: the 4 KB layout even
// where 32 KB arguments are allowed (to compare the two, or to rule the large layout out).
bool classic_args_forced() {
  static const bool forced = [] {
    const char* v = std::getenv("FUSEDLR_KERNEL_ARGS");
    return v != nullptr && (std::strcmp(v, "classic") == 0 || std::strcmp(v, "4096") == 0);
  }();
  return forced;
}

mt::UpdateArgs args_of(const cuda::UpdateCall& call) {
  return mt::UpdateArgs{call.hparams, call.group_lr, call.grad_scale, call.found_inf,
                        call.grad_scale64};
}

// Builds the plan of one element type in `Layout` and calls launch(meta, blocks) once per
// metadata block.
template <int Depth, int Layout, typename Launch>
int launch_plan(const cuda::UpdateTensor* tensors, int64_t n, const Launch& launch) {
  std::vector<mt::TensorEntry<Depth>> entries(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < Depth; ++k) entries[i].ptr[k] = tensors[i].ptr[k];
    entries[i].numel = tensors[i].numel;
    entries[i].step = tensors[i].step;
    entries[i].group = tensors[i].group;
  }
  cudaError_t err = cudaSuccess;
  mt::build_plan<Depth, Layout>(entries.data(), n, 0, 0,
                                [&](const mt::TensorListMeta<Depth, Layout>& meta, int blocks) {
                                  if (err != cudaSuccess) return;
                                  err = launch(meta, blocks);
                                });
  return static_cast<int>(err);
}

template <typename T, int Layout>
int sgd_typed(const cuda::UpdateTensor* tensors, int64_t n, const cuda::UpdateCall& call) {
  const mt::UpdateArgs args = args_of(call);
  const auto stream = static_cast<cudaStream_t>(call.stream);
  return launch_plan<3, Layout>(tensors, n,
                                [&](const mt::TensorListMeta<3, Layout>& meta, int blocks) {
                                  return FUSEDLR_LAUNCH((sgd_kernel<T, Layout>), blocks,
                                                        mt::kBlockThreads, 0, stream, meta, args);
                                });
}

template <typename T, int Layout>
int adam_typed(const cuda::UpdateTensor* tensors, int64_t n, const cuda::UpdateCall& call) {
  const mt::UpdateArgs args = args_of(call);
  const auto stream = static_cast<cudaStream_t>(call.stream);
  return launch_plan<5, Layout>(tensors, n,
                                [&](const mt::TensorListMeta<5, Layout>& meta, int blocks) {
                                  return FUSEDLR_LAUNCH((adam_kernel<T, Layout>), blocks,
                                                        mt::kBlockThreads, 0, stream, meta, args);
                                });
}

template <typename T, int Layout>
int sgd_master_typed(const cuda::UpdateTensor* tensors, int64_t n, const cuda::UpdateCall& call) {
  const mt::UpdateArgs args = args_of(call);
  const auto stream = static_cast<cudaStream_t>(call.stream);
  return launch_plan<4, Layout>(tensors, n,
                                [&](const mt::TensorListMeta<4, Layout>& meta, int blocks) {
                                  return FUSEDLR_LAUNCH((sgd_master_kernel<T, Layout>), blocks,
                                                        mt::kBlockThreads, 0, stream, meta, args);
                                });
}

template <typename T, int Layout>
int adam_master_typed(const cuda::UpdateTensor* tensors, int64_t n, const cuda::UpdateCall& call) {
  const mt::UpdateArgs args = args_of(call);
  const auto stream = static_cast<cudaStream_t>(call.stream);
  return launch_plan<6, Layout>(tensors, n,
                                [&](const mt::TensorListMeta<6, Layout>& meta, int blocks) {
                                  return FUSEDLR_LAUNCH((adam_master_kernel<T, Layout>), blocks,
                                                        mt::kBlockThreads, 0, stream, meta, args);
                                });
}

// The attributes of the update kernel `kernel` and of the step kernel: loaded (image, JIT) and
// admitting the launch shapes.
template <int Layout, typename Kernel>
int check_kernel_pair(Kernel kernel) {
  cudaFuncAttributes attr{};
  cudaError_t err = FUSEDLR_FUNC_ATTRIBUTES(&attr, kernel);
  if (err == cudaSuccess && attr.maxThreadsPerBlock < mt::kBlockThreads) {
    err = cudaErrorInvalidConfiguration;
  }
  if (err == cudaSuccess) err = FUSEDLR_FUNC_ATTRIBUTES(&attr, step_kernel<Layout>);
  if (err == cudaSuccess && attr.maxThreadsPerBlock < mt::kStepThreads) {
    err = cudaErrorInvalidConfiguration;
  }
  if (err != cudaSuccess) FUSEDLR_CLEAR_ERROR();  // not sticky: leave no error for a later check
  return static_cast<int>(err);
}

template <typename T, int Layout>
int check_master_typed(bool adam) {
  return adam ? check_kernel_pair<Layout>(adam_master_kernel<T, Layout>)
              : check_kernel_pair<Layout>(sgd_master_kernel<T, Layout>);
}

template <typename T, int Layout>
int check_typed(bool adam) {
  return adam ? check_kernel_pair<Layout>(adam_kernel<T, Layout>)
              : check_kernel_pair<Layout>(sgd_kernel<T, Layout>);
}

template <int Layout>
int step_typed(float* const* steps, const int32_t* groups, const uint8_t* has_state, int64_t n,
               bool sgd, const cuda::UpdateCall& call) {
  const mt::UpdateArgs args = args_of(call);
  const auto stream = static_cast<cudaStream_t>(call.stream);
  cudaError_t err = cudaSuccess;
  mt::build_step_plan<Layout>(steps, groups, has_state, n, [&](const mt::StepMetaT<Layout>& meta) {
    if (err != cudaSuccess) return;
    const int blocks = (meta.count + mt::kStepThreads - 1) / mt::kStepThreads;
    err = FUSEDLR_LAUNCH(step_kernel<Layout>, blocks, mt::kStepThreads, 0, stream, meta, args, sgd);
  });
  return static_cast<int>(err);
}

// Op<T, Layout>::run(args...) for the call's element type, then its layout. A build without the
// large layout (a toolkit before CUDA 12.1) has only the classic instantiations.
template <template <typename, int> class Op, typename T, typename... A>
int run_layout(int layout, const A&... a) {
#if FUSEDLR_HAS_LARGE_ARGS
  if (layout == mt::kLargeArgs) return Op<T, mt::kLargeArgs>::run(a...);
#endif
  if (layout != mt::kClassicArgs) return static_cast<int>(cudaErrorInvalidValue);
  return Op<T, mt::kClassicArgs>::run(a...);
}

template <template <typename, int> class Op, typename... A>
int run_typed(cuda::ElemType type, int layout, const A&... a) {
  switch (type) {
    case cuda::ElemType::kFloat:
      return run_layout<Op, float>(layout, a...);
    case cuda::ElemType::kDouble:
      return run_layout<Op, double>(layout, a...);
    case cuda::ElemType::kHalf:
      return run_layout<Op, __half>(layout, a...);
    case cuda::ElemType::kBFloat16:
      return run_layout<Op, __nv_bfloat16>(layout, a...);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// The 16-bit types of the master kernels, then the layout.
template <template <typename, int> class Op, typename... A>
int run_low_typed(cuda::ElemType type, int layout, const A&... a) {
  switch (type) {
    case cuda::ElemType::kHalf:
      return run_layout<Op, __half>(layout, a...);
    case cuda::ElemType::kBFloat16:
      return run_layout<Op, __nv_bfloat16>(layout, a...);
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
}

template <typename T, int Layout>
struct CheckOp {
  static int run(bool adam) { return check_typed<T, Layout>(adam); }
};
template <typename T, int Layout>
struct CheckMasterOp {
  static int run(bool adam) { return check_master_typed<T, Layout>(adam); }
};
template <typename T, int Layout>
struct SgdMasterOp {
  static int run(const cuda::UpdateTensor* t, int64_t n, const cuda::UpdateCall& c) {
    return sgd_master_typed<T, Layout>(t, n, c);
  }
};
template <typename T, int Layout>
struct AdamMasterOp {
  static int run(const cuda::UpdateTensor* t, int64_t n, const cuda::UpdateCall& c) {
    return adam_master_typed<T, Layout>(t, n, c);
  }
};
template <typename T, int Layout>
struct SgdOp {
  static int run(const cuda::UpdateTensor* t, int64_t n, const cuda::UpdateCall& c) {
    return sgd_typed<T, Layout>(t, n, c);
  }
};
template <typename T, int Layout>
struct AdamOp {
  static int run(const cuda::UpdateTensor* t, int64_t n, const cuda::UpdateCall& c) {
    return adam_typed<T, Layout>(t, n, c);
  }
};

}  // namespace

namespace cuda {

int kernel_arg_layout() {
#if FUSEDLR_HAS_LARGE_ARGS
  if (!classic_args_forced() && FUSEDLR_DEVICE_TAKES_LARGE_ARGS()) return mt::kLargeArgs;
#endif
  return mt::kClassicArgs;
}

bool large_args_compiled() { return FUSEDLR_HAS_LARGE_ARGS != 0; }

int check_update_kernels(ElemType type, bool adam, int layout) {
  return run_typed<CheckOp>(type, layout, adam);
}

int check_master_kernels(ElemType type, bool adam, int layout) {
  return run_low_typed<CheckMasterOp>(type, layout, adam);
}

int launch_sgd_master_update(ElemType type, const UpdateTensor* tensors, int64_t n,
                             const UpdateCall& call) {
  return run_low_typed<SgdMasterOp>(type, call.arg_layout, tensors, n, call);
}

int launch_adam_master_update(ElemType type, const UpdateTensor* tensors, int64_t n,
                              const UpdateCall& call) {
  return run_low_typed<AdamMasterOp>(type, call.arg_layout, tensors, n, call);
}

int launch_sgd_update(ElemType type, const UpdateTensor* tensors, int64_t n,
                      const UpdateCall& call) {
  return run_typed<SgdOp>(type, call.arg_layout, tensors, n, call);
}

int launch_adam_update(ElemType type, const UpdateTensor* tensors, int64_t n,
                       const UpdateCall& call) {
  return run_typed<AdamOp>(type, call.arg_layout, tensors, n, call);
}

int launch_step_increment(float* const* steps, const int32_t* groups, const uint8_t* has_state,
                          int64_t n, bool sgd, const UpdateCall& call) {
#if FUSEDLR_HAS_LARGE_ARGS
  if (call.arg_layout == mt::kLargeArgs) {
    return step_typed<mt::kLargeArgs>(steps, groups, has_state, n, sgd, call);
  }
#endif
  if (call.arg_layout != mt::kClassicArgs) return static_cast<int>(cudaErrorInvalidValue);
  return step_typed<mt::kClassicArgs>(steps, groups, has_state, n, sgd, call);
}

int launch_eval_schedule(const double* program, const double* hparams, const double* lr_scale,
                         const int64_t* counter, int64_t groups, double* out, void* stream) {
  if (groups <= 0) return 0;
  const int64_t blocks = (groups + mt::kEvalThreads - 1) / mt::kEvalThreads;
  return static_cast<int>(FUSEDLR_LAUNCH(eval_schedule_kernel, static_cast<unsigned>(blocks),
                                         mt::kEvalThreads, 0, static_cast<cudaStream_t>(stream),
                                         program, hparams, lr_scale, counter, groups, out));
}

const char* error_string(int code) { return launch_error_string(code); }

}  // namespace cuda
FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr
