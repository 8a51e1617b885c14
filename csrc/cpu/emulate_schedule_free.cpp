// CPU emulation of the schedule-free CUDA kernel, for tests without a GPU:
// emulate_schedule_free_ builds the SAME launch plan as the CUDA launcher
// (multi_tensor.h build_plan, depth 4) and runs the SAME block body
// (schedule_free_block.h) over every (block, thread) of every launch, blocks and
// threads in reverse order. operation: 0 update, 1 train() switch, 2 eval() switch.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cpu/emulate_elem_traits.h"
#include "schedule_free_args.h"
#include "schedule_free_block.h"

namespace fusedlr {
namespace {

template <typename Body>
void run_grid(int blocks, int threads, const Body& body) {
  for (int b = blocks - 1; b >= 0; --b) {
    for (int t = threads - 1; t >= 0; --t) body(b, t);
  }
}

template <typename T>
void run_block(const mt::TensorListMeta<4>& m, const mt::ScheduleFreeArgs& a, int b, int t,
               int bd) {
  mt::schedule_free_block<T>(m, a, b, t, bd);
}

}  // namespace

void emulate_schedule_free(at::TensorList params, at::TensorList grads, at::TensorList zs,
                           at::TensorList exp_avg_sqs, const at::Tensor& groups,
                           const at::Tensor& hparams, const at::Tensor& state, int64_t operation,
                           int64_t max_tensors_per_launch, int64_t threads_per_block,
                           int64_t max_blocks_per_launch) {
  const char* op = "emulate_schedule_free_";
  TORCH_CHECK(operation >= kSfUpdate && operation <= kSfToEval, op,
              ": operation must be 0 (update), 1 (train) or 2 (eval), got ", operation);
  const bool update = operation == kSfUpdate;
  check_schedule_free_tensors(op, params, grads, zs, exp_avg_sqs, groups, hparams,
                              update ? &state : nullptr);
  TORCH_CHECK(hparams.device().is_cpu(), op, ": the emulator runs on CPU tensors");
  TORCH_CHECK(!update || grads.size() == params.size(), op, ": an update needs one grad per param");
  TORCH_CHECK(threads_per_block >= 1 && threads_per_block <= 1024, op,
              ": threads_per_block must be in [1, 1024], got ", threads_per_block);
  TORCH_CHECK(max_tensors_per_launch >= 0 && max_blocks_per_launch >= 0, op,
              ": max_tensors_per_launch and max_blocks_per_launch must be >= 0 (0: capacity)");
  const int64_t n = static_cast<int64_t>(params.size());
  const bool adam = update && static_cast<int64_t>(exp_avg_sqs.size()) == n && n > 0;
  const mt::ScheduleFreeArgs args{hparams.data_ptr<double>(),
                                  update ? state.data_ptr<double>() : nullptr,
                                  static_cast<int32_t>(operation), adam ? 1 : 0};
  const int threads = static_cast<int>(threads_per_block);
  const int64_t* gp = groups.data_ptr<int64_t>();
  for (at::ScalarType st : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    std::vector<mt::TensorEntry<4>> entries;
    for (int64_t i = 0; i < n; ++i) {
      if (params[i].scalar_type() != st) continue;
      mt::TensorEntry<4> e{};
      e.ptr[0] = params[i].data_ptr();
      e.ptr[1] = update ? grads[i].data_ptr() : nullptr;
      e.ptr[2] = zs[i].data_ptr();
      e.ptr[3] = adam ? exp_avg_sqs[i].data_ptr() : nullptr;
      e.numel = params[i].numel();
      e.step = nullptr;
      e.group = static_cast<int32_t>(gp[i]);
      entries.push_back(e);
    }
    if (entries.empty()) continue;
    mt::build_plan<4>(entries.data(), static_cast<int64_t>(entries.size()),
                      static_cast<int>(std::min<int64_t>(max_tensors_per_launch, 1 << 20)),
                      static_cast<int>(std::min<int64_t>(max_blocks_per_launch, 1 << 20)),
                      [&](const mt::TensorListMeta<4>& meta, int blocks) {
                        run_grid(blocks, threads, [&](int b, int t) {
                          switch (st) {
                            case at::kFloat:
                              return run_block<float>(meta, args, b, t, threads);
                            case at::kDouble:
                              return run_block<double>(meta, args, b, t, threads);
                            case at::kHalf:
                              return run_block<c10::Half>(meta, args, b, t, threads);
                            default:
                              return run_block<c10::BFloat16>(meta, args, b, t, threads);
                          }
                        });
                      });
  }
}

// The scalar pass through the CUDA body: one emulated thread per group.
void emulate_schedule_free_prepare(const at::Tensor& program, const at::Tensor& hparams,
                                   const at::Tensor& state, int64_t threads_per_block) {
  const char* op = "emulate_schedule_free_prepare_";
  check_schedule_free_rows(op, hparams, &state);
  TORCH_CHECK(hparams.device().is_cpu(), op, ": the emulator runs on CPU tensors");
  TORCH_CHECK(threads_per_block >= 1 && threads_per_block <= 1024, op,
              ": threads_per_block must be in [1, 1024], got ", threads_per_block);
  const int threads = static_cast<int>(threads_per_block);
  const int64_t groups = hparams.size(0);
  const int blocks = static_cast<int>((groups + threads - 1) / threads);
  const double* prog = program.numel() > 0 ? program.data_ptr<double>() : nullptr;
  run_grid(blocks, threads, [&](int b, int t) {
    mt::schedule_free_prepare_block(prog, hparams.data_ptr<double>(), groups,
                                    state.data_ptr<double>(), b, t, threads);
  });
}

TORCH_LIBRARY_FRAGMENT(fusedlr, m) {
  m.def(
      "emulate_schedule_free_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] zs, "
      "Tensor(c!)[] exp_avg_sqs, Tensor groups, Tensor hparams, Tensor state, int operation, "
      "int max_tensors_per_launch, int threads_per_block, int max_blocks_per_launch=0) -> ()");
  m.def(
      "emulate_schedule_free_prepare_(Tensor program, Tensor hparams, Tensor(a!) state, "
      "int threads_per_block) -> ()");
}

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) {
  m.impl("emulate_schedule_free_", &emulate_schedule_free);
  m.impl("emulate_schedule_free_prepare_", &emulate_schedule_free_prepare);
}

}  // namespace fusedlr
