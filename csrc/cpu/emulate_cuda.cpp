// CPU emulation of the CUDA update kernels, for tests on machines without a GPU.
//
// emulate_sgd_update_ / emulate_adam_update_ take the arguments of
// sgd_update_ / adam_update_ plus the launch shape, build the SAME launch plan
// as the CUDA launcher (multi_tensor.h, build_plan) and run the SAME block
// bodies (sgd_block, adam_block, step_block) over every (block, thread) of
// every launch, blocks and threads in reverse order so that a body depending
// on the order of blocks would show. 16-bit params instantiate the bodies with
// c10::Half / c10::BFloat16, whose conversions round to nearest even as
// __float2half_rn / __float2bfloat16_rn do.
//
// launch_plan_stats(numels, elem_size, max_tensors_per_launch, max_blocks, large_args) returns
// [launches, blocks, max chunk index, max element index, step launches] of the plan of tensors
// with those element counts, in the classic (4 KB) or large (32 KB) kernel-argument layout,
// without allocating them.
#include <ATen/ATen.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "check_args.h"
#include "cpu/emulate_elem_traits.h"
#include "multi_tensor.h"

namespace fusedlr {
namespace {

struct LaunchShape {
  int max_tensors;
  int max_blocks;
  int threads;
};

LaunchShape launch_shape(const char* op, int64_t max_tensors, int64_t threads, int64_t max_blocks) {
  TORCH_CHECK(threads >= 1 && threads <= 1024, op, ": threads_per_block must be in [1, 1024], got ",
              threads);
  TORCH_CHECK(max_tensors >= 0 && max_blocks >= 0, op,
              ": max_tensors_per_launch and max_blocks_per_launch must be >= 0 (0: capacity)");
  return LaunchShape{static_cast<int>(std::min<int64_t>(max_tensors, 1 << 20)),
                     static_cast<int>(std::min<int64_t>(max_blocks, 1 << 20)),
                     static_cast<int>(threads)};
}

// Emulated grid: body(block, thread) for every block and thread, in reverse order.
template <typename Body>
void run_grid(int blocks, int threads, const Body& body) {
  for (int b = blocks - 1; b >= 0; --b) {
    for (int t = threads - 1; t >= 0; --t) body(b, t);
  }
}

// As the CUDA ops' device_scalar: float32, or float64 where `keep_double` and it is float64.
std::optional<at::Tensor> host_scalar(const char* op, const char* name,
                                      const std::optional<at::Tensor>& t,
                                      bool keep_double = false) {
  if (!t.has_value() || !t->defined()) return std::nullopt;
  TORCH_CHECK(t->numel() == 1, op, ": ", name, " must have one element, got ", t->numel());
  TORCH_CHECK(t->device().is_cpu(), op, ": ", name, " must be a CPU tensor in the emulator");
  const bool dbl = keep_double && t->scalar_type() == at::kDouble;
  return t->to(dbl ? at::kDouble : at::kFloat).contiguous();
}

mt::UpdateArgs update_args(const at::Tensor& hparams, const at::Tensor& group_lr,
                           const std::optional<at::Tensor>& scale,
                           const std::optional<at::Tensor>& inf) {
  const bool dbl = scale.has_value() && scale->scalar_type() == at::kDouble;
  return mt::UpdateArgs{hparams.data_ptr<double>(), group_lr.data_ptr<double>(),
                        scale.has_value() && !dbl ? scale->data_ptr<float>() : nullptr,
                        inf.has_value() ? inf->data_ptr<float>() : nullptr,
                        dbl ? scale->data_ptr<double>() : nullptr};
}

// Runs the update plan of the tensors of each dtype, then the step pass over all.
template <int Depth, typename Block>
void emulate_by_type(const BucketView& view, const std::vector<mt::TensorEntry<Depth>>& entries,
                     const LaunchShape& shape, const Block& block) {
  for (at::ScalarType st : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    std::vector<mt::TensorEntry<Depth>> subset;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (view.params[i]->scalar_type() == st) subset.push_back(entries[i]);
    }
    if (subset.empty()) continue;
    mt::build_plan<Depth>(subset.data(), static_cast<int64_t>(subset.size()), shape.max_tensors,
                          shape.max_blocks, [&](const mt::TensorListMeta<Depth>& meta, int blocks) {
                            run_grid(blocks, shape.threads,
                                     [&](int b, int t) { block(st, meta, b, t, shape.threads); });
                          });
  }
}

void emulate_steps(at::TensorList steps, const at::Tensor& meta,
                   const std::vector<uint8_t>& has_state, bool sgd, const mt::UpdateArgs& args,
                   int threads) {
  const int64_t n = static_cast<int64_t>(steps.size());
  if (n == 0) return;
  const int64_t* mtp = meta.data_ptr<int64_t>();
  std::vector<float*> ptrs(n);
  std::vector<int32_t> groups(n);
  for (int64_t i = 0; i < n; ++i) {
    ptrs[i] = steps[i].data_ptr<float>();
    groups[i] = static_cast<int32_t>(mtp[2 * i]);
  }
  mt::build_step_plan(ptrs.data(), groups.data(), has_state.data(), n, [&](const mt::StepMeta& m) {
    const int blocks = (m.count + threads - 1) / threads;
    run_grid(blocks, threads, [&](int b, int t) { mt::step_block(m, args, sgd, b, t, threads); });
  });
}

}  // namespace

void emulate_sgd_update(at::TensorList params, at::TensorList grads, at::TensorList bufs,
                        at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                        const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                        const std::optional<at::Tensor>& found_inf, int64_t max_tensors_per_launch,
                        int64_t threads_per_block, int64_t max_blocks_per_launch) {
  const char* op = "emulate_sgd_update_";
  const BucketView view =
      check_bucket(op, params, grads, {{"momentum_buffers", bufs}}, steps, meta, hparams, group_lr);
  TORCH_CHECK(hparams.device().is_cpu(), op, ": the emulator runs on CPU tensors");
  const LaunchShape shape =
      launch_shape(op, max_tensors_per_launch, threads_per_block, max_blocks_per_launch);
  const auto scale = host_scalar(op, "grad_scale", grad_scale, /*keep_double=*/true);
  const auto inf = host_scalar(op, "found_inf", found_inf);
  const mt::UpdateArgs args = update_args(hparams, group_lr, scale, inf);
  const int64_t n = static_cast<int64_t>(params.size());
  const int64_t* mtp = meta.data_ptr<int64_t>();
  std::vector<mt::TensorEntry<3>> entries(n);
  std::vector<uint8_t> has_state(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = mtp[2 * i + 1];
    mt::TensorEntry<3>& e = entries[i];
    e.ptr[0] = view.params[i]->data_ptr();
    e.ptr[1] = view.grads[i]->data_ptr();
    e.ptr[2] = slot >= 0 ? data_or_null(bufs[slot]) : nullptr;
    e.numel = view.params[i]->numel();
    e.step = steps[i].data_ptr<float>();
    e.group = static_cast<int32_t>(mtp[2 * i]);
    has_state[i] = slot >= 0 ? 1 : 0;
  }
  emulate_by_type<3>(view, entries, shape,
                     [&](at::ScalarType st, const mt::TensorListMeta<3>& m, int b, int t, int bd) {
                       switch (st) {
                         case at::kFloat:
                           return mt::sgd_block<float>(m, args, b, t, bd);
                         case at::kDouble:
                           return mt::sgd_block<double>(m, args, b, t, bd);
                         case at::kHalf:
                           return mt::sgd_block<c10::Half>(m, args, b, t, bd);
                         default:
                           return mt::sgd_block<c10::BFloat16>(m, args, b, t, bd);
                       }
                     });
  emulate_steps(steps, meta, has_state, /*sgd=*/true, args, shape.threads);
  view.write_back(scale.has_value());
}

void emulate_adam_update(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                         at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                         at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                         const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                         const std::optional<at::Tensor>& found_inf, int64_t max_tensors_per_launch,
                         int64_t threads_per_block, int64_t max_blocks_per_launch) {
  const char* op = "emulate_adam_update_";
  const BucketView view = check_bucket(
      op, params, grads,
      {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}},
      steps, meta, hparams, group_lr);
  TORCH_CHECK(hparams.device().is_cpu(), op, ": the emulator runs on CPU tensors");
  const LaunchShape shape =
      launch_shape(op, max_tensors_per_launch, threads_per_block, max_blocks_per_launch);
  const auto scale = host_scalar(op, "grad_scale", grad_scale, /*keep_double=*/true);
  const auto inf = host_scalar(op, "found_inf", found_inf);
  const mt::UpdateArgs args = update_args(hparams, group_lr, scale, inf);
  const int64_t n = static_cast<int64_t>(params.size());
  const int64_t* mtp = meta.data_ptr<int64_t>();
  std::vector<mt::TensorEntry<5>> entries(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = mtp[2 * i + 1];
    mt::TensorEntry<5>& e = entries[i];
    e.ptr[0] = view.params[i]->data_ptr();
    e.ptr[1] = view.grads[i]->data_ptr();
    e.ptr[2] = exp_avgs[i].data_ptr();
    e.ptr[3] = exp_avg_sqs[i].data_ptr();
    e.ptr[4] = slot >= 0 ? data_or_null(max_exp_avg_sqs[slot]) : nullptr;
    e.numel = view.params[i]->numel();
    e.step = steps[i].data_ptr<float>();
    e.group = static_cast<int32_t>(mtp[2 * i]);
  }
  emulate_by_type<5>(view, entries, shape,
                     [&](at::ScalarType st, const mt::TensorListMeta<5>& m, int b, int t, int bd) {
                       switch (st) {
                         case at::kFloat:
                           return mt::adam_block<float>(m, args, b, t, bd);
                         case at::kDouble:
                           return mt::adam_block<double>(m, args, b, t, bd);
                         case at::kHalf:
                           return mt::adam_block<c10::Half>(m, args, b, t, bd);
                         default:
                           return mt::adam_block<c10::BFloat16>(m, args, b, t, bd);
                       }
                     });
  emulate_steps(steps, meta, std::vector<uint8_t>(n, 1), /*sgd=*/false, args, shape.threads);
  view.write_back(scale.has_value());
}

// [launches, blocks, max chunk index, max element index, step launches] of the Adam launch plan
// (depth 5) of tensors with these element counts, in the classic or the large kernel-argument
// layout; nothing is allocated.
template <int Layout>
std::vector<int64_t> plan_stats(const char* op, const std::vector<mt::TensorEntry<5>>& entries,
                                int64_t elem_size, const LaunchShape& shape) {
  int64_t launches = 0, blocks = 0, max_chunk = -1, max_elem = -1;
  mt::build_plan<5, Layout>(entries.data(), static_cast<int64_t>(entries.size()), shape.max_tensors,
                            shape.max_blocks,
                            [&](const mt::TensorListMeta<5, Layout>& meta, int nblocks) {
                              ++launches;
                              blocks += nblocks;
                              for (int b = 0; b < nblocks; ++b) {
                                const mt::ChunkSpan s = mt::chunk_span(meta, b);
                                max_chunk = std::max<int64_t>(max_chunk, meta.block_to_chunk[b]);
                                max_elem = std::max(max_elem, s.start + s.n - 1);
                                // The last byte the block touches, as the kernel's int64 pointer
                                // offset.
                                TORCH_CHECK((s.start + s.n) <= INT64_MAX / elem_size, op,
                                            ": byte offset overflows int64");
                              }
                            });
  // The step pass covers every tensor of the bucket, empty ones too.
  const int64_t n = static_cast<int64_t>(entries.size());
  const int64_t per = mt::StepMetaT<Layout>::kMaxSteps;
  return {launches, blocks, max_chunk, max_elem, (n + per - 1) / per};
}

std::vector<int64_t> launch_plan_stats(c10::IntArrayRef numels, int64_t elem_size,
                                       int64_t max_tensors_per_launch,
                                       int64_t max_blocks_per_launch, bool large_args) {
  const char* op = "launch_plan_stats";
  TORCH_CHECK(elem_size == 2 || elem_size == 4 || elem_size == 8, op,
              ": elem_size must be 2, 4 or 8, got ", elem_size);
  const LaunchShape shape = launch_shape(op, max_tensors_per_launch, 1, max_blocks_per_launch);
  std::vector<mt::TensorEntry<5>> entries(numels.size());
  for (size_t i = 0; i < numels.size(); ++i) {
    TORCH_CHECK(numels[i] >= 0, op, ": numels[", i, "] is negative");
    TORCH_CHECK(numels[i] / mt::kChunkSize < (int64_t{1} << 31), op, ": numels[", i,
                "] has more than 2^31 chunks");
    entries[i] =
        mt::TensorEntry<5>{{nullptr, nullptr, nullptr, nullptr, nullptr}, numels[i], nullptr, 0};
  }
  return large_args ? plan_stats<mt::kLargeArgs>(op, entries, elem_size, shape)
                    : plan_stats<mt::kClassicArgs>(op, entries, elem_size, shape);
}

TORCH_LIBRARY_FRAGMENT(fusedlr, m) {
  m.def(
      "emulate_sgd_update_(Tensor(a!)[] params, Tensor(b!)[] grads, "
      "Tensor(c!)[] momentum_buffers, Tensor(d!)[] steps, Tensor meta, Tensor hparams, "
      "Tensor group_lr, Tensor? grad_scale, Tensor? found_inf, int max_tensors_per_launch, "
      "int threads_per_block, int max_blocks_per_launch=0) -> ()");
  m.def(
      "emulate_adam_update_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] exp_avgs, "
      "Tensor(d!)[] exp_avg_sqs, Tensor(e!)[] max_exp_avg_sqs, Tensor(f!)[] steps, Tensor meta, "
      "Tensor hparams, Tensor group_lr, Tensor? grad_scale, Tensor? found_inf, "
      "int max_tensors_per_launch, int threads_per_block, int max_blocks_per_launch=0) -> ()");
  m.def(
      "launch_plan_stats(int[] numels, int elem_size, int max_tensors_per_launch, "
      "int max_blocks_per_launch=0, bool large_args=False) -> int[]",
      &launch_plan_stats);
}

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) {
  m.impl("emulate_sgd_update_", &emulate_sgd_update);
  m.impl("emulate_adam_update_", &emulate_adam_update);
}

}  // namespace fusedlr
