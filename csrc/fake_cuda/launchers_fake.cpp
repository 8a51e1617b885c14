// csrc/cuda/update_cuda.cpp and schedule_free_cuda.cpp compiled against the fake CUDA runtime
// (one translation unit: torch's headers are parsed once), and the test ops around them:
//
//   fusedlr_fake_cuda::eval_schedule_ / sgd_update_ / adam_update_ / schedule_free_prepare_ /
//   schedule_free_update_ / schedule_free_swap_
//       the CUDA launchers (eval_schedule_cuda, ..., schedule_free_swap_cuda) on CPU tensors:
//       argument checks, pointer tables, type switch, launches, error checks;
//   fusedlr_fake_cuda::reset(stream, fail_at, fail_code, attribute_error, max_threads_per_block,
//                            attribute_fail_at, max_param_bytes, large_args)
//       clears the records, sets the current stream, makes launch number fail_at (0-based, -1:
//       none) return fail_code, and kernel-attribute queries (check_update_kernels) from number
//       attribute_fail_at on return attribute_error (0: none); all report max_threads_per_block;
//       launches whose parameters pass max_param_bytes fail as the runtime's do; large_args is
//       what the device answers when asked for 32 KB kernel arguments (kernel_arg_layout);
//   fusedlr_fake_cuda::launches() -> int[]
//       one row of kLaunchFields per launch: kernel id, grid xyz, block xyz, smem, stream,
//       parameter bytes, result (kernel ids: 0 sgd, 1 adam, 2 step, 3 eval,
//       4 schedule-free update / switch, 5 schedule-free prepare, 6 sgd master, 7 adam master,
//       -1 other);
//   fusedlr_fake_cuda::counters() -> int[]: device guards, attribute queries, errors cleared.
// A library of its own: test tools, not fusedlr ops (no fake kernels, no torch.compile support).
#define FUSEDLR_FAKE_CUDA 1
#include <string>

#include "cuda/schedule_free_cuda.cpp"
#include "cuda/update_cuda.cpp"

namespace fusedlr {
namespace {

constexpr int kLaunchFields = 11;

// The kernel of a launch, from its expression: "adam_kernel<T, Layout>", "(sgd_kernel<T, L>)",
// "step_kernel<Layout>", ...
int64_t kernel_id(const std::string& expr) {
  const std::string name = expr.substr(expr.find_first_not_of('('));
  const auto is = [&](const char* kernel) {
    const std::string k = kernel;
    return name.compare(0, k.size(), k) == 0 &&
           (name.size() == k.size() || name[k.size()] == '<' || name[k.size()] == ')');
  };
  if (is("sgd_kernel")) return 0;
  if (is("adam_kernel")) return 1;
  if (is("step_kernel")) return 2;
  if (is("eval_schedule_kernel")) return 3;
  if (is("schedule_free_kernel")) return 4;
  if (is("schedule_free_prepare_kernel")) return 5;
  if (is("sgd_master_kernel")) return 6;
  if (is("adam_master_kernel")) return 7;
  return -1;
}

void fake_cuda_reset(int64_t stream, int64_t fail_at, int64_t fail_code, int64_t attribute_error,
                     int64_t max_threads_per_block, int64_t attribute_fail_at,
                     int64_t max_param_bytes, bool large_args) {
  fake_cuda::State& s = fake_cuda::state();
  TORCH_CHECK(max_param_bytes > 0, "reset: max_param_bytes must be > 0, got ", max_param_bytes);
  s.max_param_bytes = static_cast<size_t>(max_param_bytes);
  s.large_args = large_args;
  s.launches.clear();
  s.guards = 0;
  s.attribute_queries = 0;
  s.errors_cleared = 0;
  s.attribute_error = static_cast<int>(attribute_error);
  s.attribute_fail_at = attribute_fail_at;
  s.max_threads_per_block = static_cast<int>(max_threads_per_block);
  s.current_stream = reinterpret_cast<void*>(static_cast<uintptr_t>(stream));
  s.fail_at = fail_at;
  s.fail_code = static_cast<int>(fail_code);
}

std::vector<int64_t> fake_cuda_launches() {
  std::vector<int64_t> out;
  for (const fake_cuda::LaunchRecord& r : fake_cuda::state().launches) {
    const int64_t row[kLaunchFields] = {kernel_id(r.kernel),
                                        r.grid.x,
                                        r.grid.y,
                                        r.grid.z,
                                        r.block.x,
                                        r.block.y,
                                        r.block.z,
                                        static_cast<int64_t>(r.smem),
                                        static_cast<int64_t>(reinterpret_cast<uintptr_t>(r.stream)),
                                        static_cast<int64_t>(r.param_bytes),
                                        r.result};
    out.insert(out.end(), row, row + kLaunchFields);
  }
  return out;
}

// [device guards, kernel-attribute queries, errors cleared] since the reset.
std::vector<int64_t> fake_cuda_counters() {
  const fake_cuda::State& s = fake_cuda::state();
  return {s.guards, s.attribute_queries, s.errors_cleared};
}

}  // namespace

TORCH_LIBRARY(fusedlr_fake_cuda, m) {
  m.def(
      "eval_schedule_(Tensor program, Tensor hparams, Tensor lr_scale, Tensor counter, "
      "Tensor(a!) out) -> ()",
      &eval_schedule_cuda);
  m.def(
      "sgd_update_(Tensor(a!)[] params, Tensor(b!)[] grads, "
      "Tensor(c!)[] momentum_buffers, Tensor(d!)[] steps, Tensor meta, Tensor hparams, "
      "Tensor group_lr, Tensor? grad_scale, Tensor? found_inf) -> ()",
      &sgd_update_cuda);
  m.def(
      "adam_update_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] exp_avgs, "
      "Tensor(d!)[] exp_avg_sqs, Tensor(e!)[] max_exp_avg_sqs, Tensor(f!)[] steps, Tensor meta, "
      "Tensor hparams, Tensor group_lr, Tensor? grad_scale, Tensor? found_inf) -> ()",
      &adam_update_cuda);
  m.def(
      "sgd_update_master_(Tensor(a!)[] masters, Tensor[] grads, Tensor(c!)[] momentum_buffers, "
      "Tensor(d!)[] steps, Tensor(e!)[] params, Tensor meta, Tensor hparams, Tensor group_lr, "
      "Tensor? grad_scale, Tensor? found_inf) -> ()",
      &sgd_update_master_cuda);
  m.def(
      "adam_update_master_(Tensor(a!)[] masters, Tensor[] grads, Tensor(c!)[] exp_avgs, "
      "Tensor(d!)[] exp_avg_sqs, Tensor(e!)[] max_exp_avg_sqs, Tensor(f!)[] steps, "
      "Tensor(g!)[] params, Tensor meta, Tensor hparams, Tensor group_lr, Tensor? grad_scale, "
      "Tensor? found_inf) -> ()",
      &adam_update_master_cuda);
  m.def("schedule_free_prepare_(Tensor program, Tensor hparams, Tensor(a!) state) -> ()",
        &schedule_free_prepare_cuda);
  m.def(
      "schedule_free_update_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] zs, "
      "Tensor(c!)[] exp_avg_sqs, Tensor groups, Tensor program, Tensor hparams, "
      "Tensor(d!) state) -> ()",
      &schedule_free_update_cuda);
  m.def(
      "schedule_free_swap_(Tensor(a!)[] params, Tensor[] zs, Tensor groups, Tensor hparams, "
      "bool to_train) -> ()",
      &schedule_free_swap_cuda);
  m.def(
      "reset(int stream, int fail_at, int fail_code, int attribute_error=0, "
      "int max_threads_per_block=1024, int attribute_fail_at=0, int max_param_bytes=32764, "
      "bool large_args=True) -> ()",
      &fake_cuda_reset);
  m.def("launches() -> int[]", &fake_cuda_launches);
  m.def("counters() -> int[]", &fake_cuda_counters);
}

}  // namespace fusedlr
