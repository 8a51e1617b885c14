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
constexpr int64_t kSerialBelow = 32768;  // elements: smaller calls run on one thread

struct Item {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

template <typename T>
T* ptr_at(const at::Tensor* t, int64_t off) {
  return t == nullptr ? nullptr : static_cast<T*>(t->data_ptr()) + off;
}

void run_item(const KernelTable& k, const at::Tensor& y, const at::Tensor* g, const at::Tensor& z,
              const at::Tensor* v, const Item& it, const ScheduleFreeScalars& s) {
  const int64_t b = it.begin, n = it.end - it.begin;
  switch (y.scalar_type()) {
    case at::kFloat:
      k.schedule_free_f32(ptr_at<float>(&y, b), ptr_at<float>(g, b), ptr_at<float>(&z, b),
                          ptr_at<float>(v, b), n, s);
      break;
    case at::kDouble:
      k.schedule_free_f64(ptr_at<double>(&y, b), ptr_at<double>(g, b), ptr_at<double>(&z, b),
                          ptr_at<double>(v, b), n, s);
      break;
    case at::kBFloat16:
      k.schedule_free_bf16(ptr_at<at::BFloat16>(&y, b), ptr_at<at::BFloat16>(g, b),
                           ptr_at<at::BFloat16>(&z, b), ptr_at<at::BFloat16>(v, b), n, s);
      break;
    case at::kHalf:
      k.schedule_free_f16(ptr_at<at::Half>(&y, b), ptr_at<at::Half>(g, b), ptr_at<at::Half>(&z, b),
                          ptr_at<at::Half>(v, b), n, s);
      break;
    default:
      break;  // rejected by check_schedule_free_tensors
  }
}

// Runs mode `mode` over every tensor; state may be null for train/eval switches.
void run_schedule_free(at::TensorList params, at::TensorList grads, at::TensorList zs,
                       at::TensorList exp_avg_sqs, const at::Tensor& groups,
                       const at::Tensor& hparams, const double* state, int mode) {
  const int64_t n = static_cast<int64_t>(params.size());
  const bool update = mode == kSfUpdate;
  const bool adam = update && static_cast<int64_t>(exp_avg_sqs.size()) == n && n > 0;
  const int64_t* gp = groups.data_ptr<int64_t>();
  const double* hp = hparams.data_ptr<double>();
  std::vector<ScheduleFreeScalars> scalars(n);
  std::vector<Item> items;
  int64_t total = 0;
  const double zero_state[kSfStateFields] = {};
  for (int64_t i = 0; i < n; ++i) {
    const double* st = state != nullptr ? state + gp[i] * kSfStateFields : zero_state;
    scalars[i] = make_schedule_free_scalars(hp + gp[i] * kGroupFields, st, adam, mode);
    const int64_t numel = params[i].numel();
    total += numel;
    for (int64_t b = 0; b < numel; b += kChunk)
      items.push_back({i, b, std::min(numel, b + kChunk)});
  }
  const KernelTable& k = cpu_kernels();
  const auto range = [&](int64_t b, int64_t e) {
    for (int64_t x = b; x < e; ++x) {
      const Item& it = items[x];
      const int64_t i = it.tensor;
      run_item(k, params[i], update ? &grads[i] : nullptr, zs[i], adam ? &exp_avg_sqs[i] : nullptr,
               it, scalars[i]);
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
  check_schedule_free_update(op, params, grads, zs, exp_avg_sqs, groups, program, hparams, state);
  prepare_groups(program, hparams, state);
  run_schedule_free(params, grads, zs, exp_avg_sqs, groups, hparams, state.data_ptr<double>(),
                    kSfUpdate);
}

void schedule_free_swap_cpu(at::TensorList params, at::TensorList zs, const at::Tensor& groups,
                            const at::Tensor& hparams, bool to_train) {
  const char* op = "schedule_free_swap_";
  check_schedule_free_tensors(op, params, {}, zs, {}, groups, hparams, nullptr);
  run_schedule_free(params, {}, zs, {}, groups, hparams, nullptr,
                    to_train ? kSfToTrain : kSfToEval);
}

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) {
  m.impl("schedule_free_prepare_", &schedule_free_prepare_cpu);
  m.impl("schedule_free_update_", &schedule_free_update_cpu);
  m.impl("schedule_free_swap_", &schedule_free_swap_cpu);
}

}  // namespace fusedlr
