// CPU implementations of the schedule-free ops (csrc/include/schedule_free.h):
// schedule_free_prepare_ (the per-group scalars of a step), schedule_free_update_
// (the fused update of every tensor of a device) and schedule_free_swap_
// (train() / eval(): y <-> x through z). Tensors are cut into chunks run by one
// at::parallel_for over the span kernels of the best vector ISA (kernel_table.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "kernel_table.h"
#include "schedule_free_args.h"

namespace fusedlr {
namespace {

constexpr int64_t kChunk = 16384;
static_assert(kMaxPrefetch < kChunk, "a full work item must be able to prefetch");
constexpr int64_t kSerialBelow = 32768;  // elements: smaller calls run on one thread

// One tensor's raw pointers (y, grad, z, exp_avg_sq; absent ones null), read once while the
// argument checks have the tensor in cache.
struct Span {
  void* y;
  const void* g;
  void* z;
  void* v;
  int64_t numel;
  int64_t group;
  at::ScalarType type;
};

struct Item {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

// Collects the spans of a call, as check_schedule_free_tensors' visitor.
struct SpanCollector {
  at::TensorList params, grads, zs, vs;
  const int64_t* groups;
  bool with_grads, with_vs;
  std::vector<Span>* out;
  void operator()(int64_t i) const {
    const at::Tensor& p = params[i];
    out->push_back(Span{p.data_ptr(), with_grads ? grads[i].const_data_ptr() : nullptr,
                        zs[i].data_ptr(), with_vs ? vs[i].data_ptr() : nullptr, p.numel(),
                        groups[i], p.scalar_type()});
  }
};

template <typename T>
T* at_offset(const void* p, int64_t off) {
  return p == nullptr ? nullptr : static_cast<T*>(const_cast<void*>(p)) + off;
}

void run_item(const KernelTable& k, const Span& t, const Item& it, const ScheduleFreeScalars& s) {
  const int64_t b = it.begin, n = it.end - it.begin;
  switch (t.type) {
    case at::kFloat:
      k.schedule_free_f32(at_offset<float>(t.y, b), at_offset<float>(t.g, b),
                          at_offset<float>(t.z, b), at_offset<float>(t.v, b), n, s);
      break;
    case at::kDouble:
      k.schedule_free_f64(at_offset<double>(t.y, b), at_offset<double>(t.g, b),
                          at_offset<double>(t.z, b), at_offset<double>(t.v, b), n, s);
      break;
    case at::kBFloat16:
      k.schedule_free_bf16(at_offset<at::BFloat16>(t.y, b), at_offset<at::BFloat16>(t.g, b),
                           at_offset<at::BFloat16>(t.z, b), at_offset<at::BFloat16>(t.v, b), n, s);
      break;
    case at::kHalf:
      k.schedule_free_f16(at_offset<at::Half>(t.y, b), at_offset<at::Half>(t.g, b),
                          at_offset<at::Half>(t.z, b), at_offset<at::Half>(t.v, b), n, s);
      break;
    default:
      break;  // rejected by check_schedule_free_tensors
  }
}

SpanCollector collector(at::TensorList params, at::TensorList grads, at::TensorList zs,
                        at::TensorList vs, const at::Tensor& groups, std::vector<Span>* out) {
  const int64_t n = static_cast<int64_t>(params.size());
  out->reserve(static_cast<size_t>(n));
  return SpanCollector{params,
                       grads,
                       zs,
                       vs,
                       groups.data_ptr<int64_t>(),
                       static_cast<int64_t>(grads.size()) == n,
                       static_cast<int64_t>(vs.size()) == n && n > 0,
                       out};
}

// Runs mode `mode` over the checked spans; state may be null for train/eval switches. The
// scalars are per group (the same doubles for every tensor of a group).
void run_schedule_free(const std::vector<Span>& spans, const at::Tensor& hparams,
                       const double* state, int mode, bool adam) {
  const double* hp = hparams.data_ptr<double>();
  const int64_t n_groups = hparams.size(0);
  std::vector<ScheduleFreeScalars> scalars(n_groups);
  const double zero_state[kSfStateFields] = {};
  for (int64_t g = 0; g < n_groups; ++g) {
    const double* st = state != nullptr ? state + g * kSfStateFields : zero_state;
    scalars[g] = make_schedule_free_scalars(hp + g * kGroupFields, st, adam, mode);
  }
  // Reused: no allocation per step. (A reference, so that the parallel_for workers see this
  // thread's vector, not their own thread_local one.)
  thread_local std::vector<Item> scratch;
  std::vector<Item>& items = scratch;
  items.clear();
  int64_t total = 0;
  for (size_t i = 0; i < spans.size(); ++i) {
    const int64_t numel = spans[i].numel;
    total += numel;
    for (int64_t b = 0; b < numel; b += kChunk)
      items.push_back({static_cast<int64_t>(i), b, std::min(numel, b + kChunk)});
  }
  const KernelTable& k = cpu_kernels();
  const auto range = [&](int64_t b, int64_t e) {
    for (int64_t x = b; x < e; ++x) {
      const Span& t = spans[items[x].tensor];
      run_item(k, t, items[x], scalars[t.group]);
    }
  };
  const int64_t n_items = static_cast<int64_t>(items.size());
  if (total < kSerialBelow) {
    range(0, n_items);
  } else {
    at::parallel_for(0, n_items, 1, range);
  }
}

void prepare_groups(const at::Tensor& program, const at::Tensor& hparams, const at::Tensor& state) {
  const double* prog = program.numel() > 0 ? program.data_ptr<double>() : nullptr;
  for (int64_t g = 0; g < hparams.size(0); ++g) {
    schedule_free_prepare_group(prog, hparams.data_ptr<double>(), g, state.data_ptr<double>());
  }
}

}  // namespace

void schedule_free_prepare_cpu(const at::Tensor& program, const at::Tensor& hparams,
                               const at::Tensor& state) {
  const char* op = "schedule_free_prepare_";
  check_schedule_free_rows(op, hparams, &state);
  check_schedule_free_program(op, program, hparams);
  prepare_groups(program, hparams, state);
}

void schedule_free_update_cpu(at::TensorList params, at::TensorList grads, at::TensorList zs,
                              at::TensorList exp_avg_sqs, const at::Tensor& groups,
                              const at::Tensor& program, const at::Tensor& hparams,
                              const at::Tensor& state) {
  const char* op = "schedule_free_update_";
  thread_local std::vector<Span> spans;  // reused: no allocation per step
  spans.clear();
  check_schedule_free_update(op, params, grads, zs, exp_avg_sqs, groups, program, hparams, state,
                             collector(params, grads, zs, exp_avg_sqs, groups, &spans));
  prepare_groups(program, hparams, state);
  const bool adam = !params.empty() && exp_avg_sqs.size() == params.size();
  run_schedule_free(spans, hparams, state.data_ptr<double>(), kSfUpdate, adam);
}

void schedule_free_swap_cpu(at::TensorList params, at::TensorList zs, const at::Tensor& groups,
                            const at::Tensor& hparams, bool to_train) {
  const char* op = "schedule_free_swap_";
  thread_local std::vector<Span> spans;
  spans.clear();
  check_schedule_free_tensors(op, params, {}, zs, {}, groups, hparams, nullptr,
                              collector(params, {}, zs, {}, groups, &spans));
  run_schedule_free(spans, hparams, nullptr, to_train ? kSfToTrain : kSfToEval, false);
}

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) {
  m.impl("schedule_free_prepare_", &schedule_free_prepare_cpu);
  m.impl("schedule_free_update_", &schedule_free_update_cpu);
  m.impl("schedule_free_swap_", &schedule_free_swap_cpu);
}

}  // namespace fusedlr
