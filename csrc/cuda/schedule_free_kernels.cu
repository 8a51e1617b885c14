// Schedule-free CUDA kernels: __global__ wrappers over the block bodies of
// schedule_free_block.h and their launch functions. CUDA runtime headers only.
#include <vector>

#include "cuda/elem_traits_cuda.h"
#include "cuda/launch_point.h"
#include "cuda/schedule_free_launch.h"
#include "schedule_free_block.h"

namespace fusedlr {
FUSEDLR_CUDA_ABI_BEGIN
namespace {

constexpr int kPrepareThreads = 64;

template <typename T>
__global__ void __launch_bounds__(mt::kBlockThreads)
    schedule_free_kernel(const __grid_constant__ mt::TensorListMeta<4> meta,
                         const mt::ScheduleFreeArgs args) {
  mt::schedule_free_block<T>(meta, args, blockIdx.x, threadIdx.x, blockDim.x);
}

__global__ void __launch_bounds__(kPrepareThreads)
    schedule_free_prepare_kernel(const double* prog, const double* hparams, int64_t groups,
                                 double* state) {
  mt::schedule_free_prepare_block(prog, hparams, groups, state, blockIdx.x, threadIdx.x,
                                  blockDim.x);
}

template <typename T>
int launch_typed(const cuda::ScheduleFreeTensor* tensors, int64_t n,
                 const mt::ScheduleFreeArgs& args, cudaStream_t stream) {
  std::vector<mt::TensorEntry<4>> entries(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < 4; ++k) entries[i].ptr[k] = tensors[i].ptr[k];
    entries[i].numel = tensors[i].numel;
    entries[i].step = nullptr;
    entries[i].group = tensors[i].group;
  }
  cudaError_t err = cudaSuccess;
  mt::build_plan<4>(entries.data(), n, 0, 0, [&](const mt::TensorListMeta<4>& meta, int blocks) {
    if (err != cudaSuccess) return;
    err = FUSEDLR_LAUNCH(schedule_free_kernel<T>, blocks, mt::kBlockThreads, 0, stream, meta, args);
  });
  return static_cast<int>(err);
}

}  // namespace

namespace cuda {

int launch_schedule_free(ElemType type, const ScheduleFreeTensor* tensors, int64_t n,
                         const double* hparams, const double* state, int mode, bool adam,
                         void* stream) {
  const mt::ScheduleFreeArgs args{hparams, state, mode, adam ? 1 : 0};
  const auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ElemType::kFloat:
      return launch_typed<float>(tensors, n, args, s);
    case ElemType::kDouble:
      return launch_typed<double>(tensors, n, args, s);
    case ElemType::kHalf:
      return launch_typed<__half>(tensors, n, args, s);
    case ElemType::kBFloat16:
      return launch_typed<__nv_bfloat16>(tensors, n, args, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int launch_schedule_free_prepare(const double* program, const double* hparams, int64_t groups,
                                 double* state, void* stream) {
  if (groups <= 0) return 0;
  const int64_t blocks = (groups + kPrepareThreads - 1) / kPrepareThreads;
  return static_cast<int>(
      FUSEDLR_LAUNCH(schedule_free_prepare_kernel, static_cast<unsigned>(blocks), kPrepareThreads,
                     0, static_cast<cudaStream_t>(stream), program, hparams, groups, state));
}

}  // namespace cuda
FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr
