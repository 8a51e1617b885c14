// CUDA launchers of the schedule-free ops. Arguments are checked first
// (schedule_free_args.h), then the tensors are taken apart into raw device
// pointers and the kernels of schedule_free_kernels.cu run on the current
// stream. Nothing here waits for the device: the per-step scalars are computed by
// a one-thread-per-group kernel into the device state row that the update reads. Compiled with
// FUSEDLR_FAKE_CUDA it runs on the CPU against the fake runtime (see update_cuda.cpp).
#include <torch/library.h>

#include <vector>

#include "cuda/c10_cuda_or_fake.h"
#include "cuda/elem_type_of.h"
#include "cuda/schedule_free_launch.h"
#include "schedule_free_args.h"

namespace fusedlr {
FUSEDLR_CUDA_ABI_BEGIN
namespace {

void check_sf_launch(const char* op, int err) {
  TORCH_CHECK(err == 0, op, ": CUDA launch failed: ", cuda::error_string(err));
}

void launch_all(const char* op, at::TensorList params, at::TensorList grads, at::TensorList zs,
                at::TensorList exp_avg_sqs, const at::Tensor& groups, const at::Tensor& hparams,
                const double* state, int mode) {
  TORCH_CHECK(on_kernel_device(hparams.device()), op, ": the CUDA kernel got tensors on ",
              hparams.device());
  const rt::CUDAGuard guard(hparams.device());
  void* stream = rt::getCurrentCUDAStream(hparams.device().index()).stream();
  const int64_t n = static_cast<int64_t>(params.size());
  const bool update = mode == kSfUpdate;
  const bool adam = update && static_cast<int64_t>(exp_avg_sqs.size()) == n && n > 0;
  const int64_t* gp = groups.data_ptr<int64_t>();
  for (at::ScalarType st : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    std::vector<cuda::ScheduleFreeTensor> tensors;
    for (int64_t i = 0; i < n; ++i) {
      if (params[i].scalar_type() != st) continue;
      cuda::ScheduleFreeTensor t{};
      t.ptr[0] = params[i].data_ptr();
      t.ptr[1] = update ? grads[i].data_ptr() : nullptr;
      t.ptr[2] = zs[i].data_ptr();
      t.ptr[3] = adam ? exp_avg_sqs[i].data_ptr() : nullptr;
      t.numel = params[i].numel();
      t.group = static_cast<int32_t>(gp[i]);
      tensors.push_back(t);
    }
    if (tensors.empty()) continue;
    check_sf_launch(op, cuda::launch_schedule_free(
                            elem_type_of(st), tensors.data(), static_cast<int64_t>(tensors.size()),
                            hparams.data_ptr<double>(), state, mode, adam, stream));
  }
}

void prepare_groups(const char* op, const at::Tensor& program, const at::Tensor& hparams,
                    const at::Tensor& state) {
  TORCH_CHECK(on_kernel_device(hparams.device()), op, ": the CUDA kernel got tensors on ",
              hparams.device());
  const rt::CUDAGuard guard(hparams.device());
  void* stream = rt::getCurrentCUDAStream(hparams.device().index()).stream();
  check_sf_launch(
      op, cuda::launch_schedule_free_prepare(
              program.numel() > 0 ? program.data_ptr<double>() : nullptr,
              hparams.data_ptr<double>(), hparams.size(0), state.data_ptr<double>(), stream));
}

}  // namespace

void schedule_free_prepare_cuda(const at::Tensor& program, const at::Tensor& hparams,
                                const at::Tensor& state) {
  const char* op = "schedule_free_prepare_";
  check_schedule_free_rows(op, hparams, &state);
  check_schedule_free_program(op, program, hparams);
  prepare_groups(op, program, hparams, state);
}

// Checks everything, then the scalar pass, then the update kernels (same stream: in order).
void schedule_free_update_cuda(at::TensorList params, at::TensorList grads, at::TensorList zs,
                               at::TensorList exp_avg_sqs, const at::Tensor& groups,
                               const at::Tensor& program, const at::Tensor& hparams,
                               const at::Tensor& state) {
  const char* op = "schedule_free_update_";
  check_schedule_free_update(op, params, grads, zs, exp_avg_sqs, groups, program, hparams, state);
  prepare_groups(op, program, hparams, state);
  launch_all(op, params, grads, zs, exp_avg_sqs, groups, hparams, state.data_ptr<double>(),
             kSfUpdate);
}

void schedule_free_swap_cuda(at::TensorList params, at::TensorList zs, const at::Tensor& groups,
                             const at::Tensor& hparams, bool to_train) {
  const char* op = "schedule_free_swap_";
  check_schedule_free_tensors(op, params, {}, zs, {}, groups, hparams, nullptr);
  launch_all(op, params, {}, zs, {}, groups, hparams, nullptr, to_train ? kSfToTrain : kSfToEval);
}

#if !defined(FUSEDLR_FAKE_CUDA)
TORCH_LIBRARY_IMPL(fusedlr, CUDA, m) {
  m.impl("schedule_free_prepare_", &schedule_free_prepare_cuda);
  m.impl("schedule_free_update_", &schedule_free_update_cuda);
  m.impl("schedule_free_swap_", &schedule_free_swap_cuda);
}
#endif

FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr
