// CPU implementations of fusedlr::sgd_update_ and fusedlr::adam_update_.
//
// Arguments are checked first (nothing is written if a check fails). Then every
// tensor is split into work items of at most kChunk elements and one
// at::parallel_for runs over all items of all tensors, so many small tensors
// cost one parallel region, not one each; inside it each item reads its
// tensor's pointers and scalars (a Job) and calls the raw-pointer span kernel
// of the best vector ISA (kernel_table.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "check_args.h"
#include "kernel_table.h"

namespace fusedlr {
namespace {

constexpr int64_t kChunk = 16384;
static_assert(kMaxPrefetch < kChunk, "a full work item must be able to prefetch");
constexpr int64_t kSerialBelow = 32768;  // elements: smaller steps run on one thread

// One tensor's raw pointers and scalars, read by the work item that runs it
// (inside the parallel region) and passed to the span kernel.
template <typename Scalars>
struct Job {
  void* p;
  void* g;
  void* s0;  // momentum buffer (SGD) / exp_avg (Adam); null when unused
  void* s1;  // exp_avg_sq (Adam)
  void* s2;  // max_exp_avg_sq (Adam with amsgrad)
  float* step;
  Scalars scalars;
  void* low = nullptr;  // master_weights in one pass: the 16-bit param the master is rounded to
};

struct WorkItem {
  int64_t job;
  int64_t begin;
  int64_t end;
};

std::vector<WorkItem> split_work(const BucketView& view, int64_t* total) {
  std::vector<WorkItem> items;
  items.reserve(view.params.size());
  *total = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(view.params.size()); ++i) {
    const int64_t n = view.params[i]->numel();
    *total += n;
    if (n > kChunk) {
      // Several threads will read this tensor's pointers: materialise a
      // copy-on-write storage here, once, not concurrently in data_ptr().
      view.params[i]->data_ptr();
      view.grads[i]->data_ptr();
    }
    if (n == 0) items.push_back({i, 0, 0});  // no elements, but its step still advances
    for (int64_t b = 0; b < n; b += kChunk) items.push_back({i, b, std::min(n, b + kChunk)});
  }
  return items;
}

// The scalars of the last (group, step) a thread computed: tensors of one group
// at one step share them (Adam's two pow() calls per tensor otherwise).
template <typename Scalars>
struct Memo {
  int64_t group = -1;
  float step = 0.0f;
  Scalars scalars;

  template <typename Make>
  const Scalars& get(int64_t g, float st, const Make& make) {
    if (g != group || st != step) {
      scalars = make();
      group = g;
      step = st;
    }
    return scalars;
  }
};

template <typename T>
T* at_offset(void* base, int64_t off) {
  return base == nullptr ? nullptr : static_cast<T*>(base) + off;
}

bool skip_for_inf(const std::optional<at::Tensor>& found_inf) {
  return found_inf.has_value() && found_inf->defined() && found_inf->item<double>() != 0.0;
}

double scale_value(const std::optional<at::Tensor>& grad_scale) {
  return (grad_scale.has_value() && grad_scale->defined()) ? grad_scale->item<double>() : 1.0;
}

// The kernel of `dtype` applied to one work item: SGD.
void run_sgd(const KernelTable& k, at::ScalarType dtype, const Job<SgdScalars>& j,
             const WorkItem& w) {
  const int64_t b = w.begin, len = w.end - w.begin;
  switch (dtype) {
    case at::kFloat:
      k.sgd_f32(at_offset<float>(j.p, b), at_offset<float>(j.g, b), at_offset<float>(j.s0, b), len,
                j.scalars);
      break;
    case at::kDouble:
      k.sgd_f64(at_offset<double>(j.p, b), at_offset<double>(j.g, b), at_offset<double>(j.s0, b),
                len, j.scalars);
      break;
    case at::kBFloat16:
      k.sgd_bf16(at_offset<at::BFloat16>(j.p, b), at_offset<at::BFloat16>(j.g, b),
                 at_offset<float>(j.s0, b), len, j.scalars);
      break;
    case at::kHalf:
      k.sgd_f16(at_offset<at::Half>(j.p, b), at_offset<at::Half>(j.g, b), at_offset<float>(j.s0, b),
                len, j.scalars);
      break;
    default:
      break;  // rejected by check_bucket
  }
}

// The kernel of `dtype` applied to one work item: Adam / AdamW.
void run_adam(const KernelTable& k, at::ScalarType dtype, const Job<AdamScalars>& j,
              const WorkItem& w) {
  const int64_t b = w.begin, len = w.end - w.begin;
  switch (dtype) {
    case at::kFloat:
      k.adam_f32(at_offset<float>(j.p, b), at_offset<float>(j.g, b), at_offset<float>(j.s0, b),
                 at_offset<float>(j.s1, b), at_offset<float>(j.s2, b), len, j.scalars);
      break;
    case at::kDouble:
      k.adam_f64(at_offset<double>(j.p, b), at_offset<double>(j.g, b), at_offset<double>(j.s0, b),
                 at_offset<double>(j.s1, b), at_offset<double>(j.s2, b), len, j.scalars);
      break;
    case at::kBFloat16:
      k.adam_bf16(at_offset<at::BFloat16>(j.p, b), at_offset<at::BFloat16>(j.g, b),
                  at_offset<float>(j.s0, b), at_offset<float>(j.s1, b), at_offset<float>(j.s2, b),
                  len, j.scalars);
      break;
    case at::kHalf:
      k.adam_f16(at_offset<at::Half>(j.p, b), at_offset<at::Half>(j.g, b),
                 at_offset<float>(j.s0, b), at_offset<float>(j.s1, b), at_offset<float>(j.s2, b),
                 len, j.scalars);
      break;
    default:
      break;
  }
}

// The one-pass master kernels of the 16-bit type `dtype` (the bucket's params), one work item:
// j.p is the float32 master, j.g the 16-bit grad, j.low the 16-bit param.
void run_sgd_master(const KernelTable& k, at::ScalarType dtype, const Job<SgdScalars>& j,
                    const WorkItem& w) {
  const int64_t b = w.begin, len = w.end - w.begin;
  if (dtype == at::kBFloat16) {
    k.sgd_master_bf16(at_offset<float>(j.p, b), at_offset<at::BFloat16>(j.g, b),
                      at_offset<at::BFloat16>(j.low, b), at_offset<float>(j.s0, b), len, j.scalars);
  } else {
    k.sgd_master_f16(at_offset<float>(j.p, b), at_offset<at::Half>(j.g, b),
                     at_offset<at::Half>(j.low, b), at_offset<float>(j.s0, b), len, j.scalars);
  }
}

void run_adam_master(const KernelTable& k, at::ScalarType dtype, const Job<AdamScalars>& j,
                     const WorkItem& w) {
  const int64_t b = w.begin, len = w.end - w.begin;
  if (dtype == at::kBFloat16) {
    k.adam_master_bf16(at_offset<float>(j.p, b), at_offset<at::BFloat16>(j.g, b),
                       at_offset<at::BFloat16>(j.low, b), at_offset<float>(j.s0, b),
                       at_offset<float>(j.s1, b), at_offset<float>(j.s2, b), len, j.scalars);
  } else {
    k.adam_master_f16(at_offset<float>(j.p, b), at_offset<at::Half>(j.g, b),
                      at_offset<at::Half>(j.low, b), at_offset<float>(j.s0, b),
                      at_offset<float>(j.s1, b), at_offset<float>(j.s2, b), len, j.scalars);
  }
}

// Runs every tensor's kernel in one parallel region. make_job(i, memo) reads
// tensor i's pointers and scalars inside the region, so the per-tensor
// preparation is split across the threads as well; steps of the tensors that
// `counts` are advanced afterwards through the pointers the jobs recorded.
// Everything that can fail was checked before (check_bucket, slot checks).
template <typename Scalars, typename MakeJob, typename Run, typename Counts>
void run_tensors(const BucketView& view, const MakeJob& make_job, const Run& run,
                 const Counts& counts) {
  int64_t total = 0;
  const std::vector<WorkItem> items = split_work(view, &total);
  const int64_t n_items = static_cast<int64_t>(items.size());
  if (n_items == 0) return;
  std::vector<float*> counted(view.params.size(), nullptr);
  const KernelTable& k = cpu_kernels();
  const auto range = [&](int64_t b, int64_t e) {
    Memo<Scalars> memo;
    for (int64_t x = b; x < e; ++x) {
      const WorkItem& w = items[x];
      const Job<Scalars> j = make_job(w.job, memo);
      run(k, view.params[w.job]->scalar_type(), j, w);
      if (w.begin == 0 && counts(j)) counted[w.job] = j.step;
    }
  };
  if (total < kSerialBelow) {
    range(0, n_items);
  } else {
    at::parallel_for(0, n_items, 1, range);
  }
  for (float* step : counted) {
    if (step != nullptr) *step += 1.0f;
  }
}

// The SGD step of a checked bucket. With `masters` (master_weights in one pass) the float32
// masters are the params the update reads and writes, the bucket's params (16-bit) receive the
// rounded masters, and grads are not written back.
void sgd_step(const char* op, const BucketView& view, at::TensorList masters, at::TensorList bufs,
              at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
              const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
              const std::optional<at::Tensor>& found_inf) {
  if (skip_for_inf(found_inf)) return;
  const double gs = scale_value(grad_scale);
  const int64_t n = static_cast<int64_t>(view.params.size());
  const double* hp = hparams.data_ptr<double>();
  const double* lrm = group_lr.data_ptr<double>();
  const int64_t* mt = meta.data_ptr<int64_t>();
  const bool master = !masters.empty();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = mt[2 * i], slot = mt[2 * i + 1];
    TORCH_CHECK(lrm[2 * g + 1] == 0.0 || slot >= 0, op, ": tensor ", i, " of group ", g,
                " has momentum ", lrm[2 * g + 1], " but no momentum buffer slot");
  }
  const auto make_job = [&](int64_t i, Memo<SgdScalars>& memo) {
    const int64_t g = mt[2 * i], slot = mt[2 * i + 1];
    Job<SgdScalars> j;
    j.step = static_cast<float*>(steps[i].data_ptr());
    j.scalars = memo.get(g, *j.step, [&] {
      return make_sgd_scalars(hp + g * kGroupFields, lrm + 2 * g, static_cast<double>(*j.step), gs);
    });
    j.scalars.has_buf = j.scalars.has_buf && slot >= 0;
    j.p = master ? masters[i].data_ptr() : view.params[i]->data_ptr();
    j.low = master ? view.params[i]->data_ptr() : nullptr;
    j.g = view.grads[i]->data_ptr();
    j.s0 = j.scalars.has_buf ? data_or_null(bufs[slot]) : nullptr;
    j.s1 = j.s2 = nullptr;
    return j;
  };
  const auto counts = [](const Job<SgdScalars>& j) { return j.scalars.has_buf; };
  if (master) {
    run_tensors<SgdScalars>(view, make_job, run_sgd_master, counts);
  } else {
    run_tensors<SgdScalars>(view, make_job, run_sgd, counts);
    view.write_back(grad_stored(gs));
  }
}

// The Adam / AdamW step of a checked bucket (see sgd_step).
void adam_step(const char* op, const BucketView& view, at::TensorList masters,
               at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
               at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
               const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
               const std::optional<at::Tensor>& found_inf) {
  if (skip_for_inf(found_inf)) return;
  const double gs = scale_value(grad_scale);
  const int64_t n = static_cast<int64_t>(view.params.size());
  const double* hp = hparams.data_ptr<double>();
  const double* lrm = group_lr.data_ptr<double>();
  const int64_t* mt = meta.data_ptr<int64_t>();
  const bool master = !masters.empty();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = mt[2 * i], slot = mt[2 * i + 1];
    TORCH_CHECK(hp[g * kGroupFields + kAmsgrad] == 0.0 || slot >= 0, op, ": tensor ", i,
                " of group ", g, " uses amsgrad but has no max_exp_avg_sq slot");
  }
  const auto make_job = [&](int64_t i, Memo<AdamScalars>& memo) {
    const int64_t g = mt[2 * i], slot = mt[2 * i + 1];
    Job<AdamScalars> j;
    j.step = static_cast<float*>(steps[i].data_ptr());
    j.scalars = memo.get(g, *j.step, [&] {
      return make_adam_scalars(hp + g * kGroupFields, lrm + 2 * g, static_cast<double>(*j.step),
                               gs);
    });
    j.p = master ? masters[i].data_ptr() : view.params[i]->data_ptr();
    j.low = master ? view.params[i]->data_ptr() : nullptr;
    j.g = view.grads[i]->data_ptr();
    j.s0 = exp_avgs[i].data_ptr();
    j.s1 = exp_avg_sqs[i].data_ptr();
    j.s2 = j.scalars.amsgrad ? data_or_null(max_exp_avg_sqs[slot]) : nullptr;
    return j;
  };
  const auto counts = [](const Job<AdamScalars>&) { return true; };
  if (master) {
    run_tensors<AdamScalars>(view, make_job, run_adam_master, counts);
  } else {
    run_tensors<AdamScalars>(view, make_job, run_adam, counts);
    view.write_back(grad_stored(gs));
  }
}

}  // namespace

void sgd_update_cpu(at::TensorList params, at::TensorList grads, at::TensorList bufs,
                    at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                    const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                    const std::optional<at::Tensor>& found_inf) {
  const char* op = "sgd_update_";
  const BucketView view =
      check_bucket(op, params, grads, {{"momentum_buffers", bufs}}, steps, meta, hparams, group_lr);
  sgd_step(op, view, {}, bufs, steps, meta, hparams, group_lr, grad_scale, found_inf);
}

void adam_update_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                     at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                     at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                     const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                     const std::optional<at::Tensor>& found_inf) {
  const char* op = "adam_update_";
  const BucketView view = check_bucket(
      op, params, grads,
      {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}},
      steps, meta, hparams, group_lr);
  adam_step(op, view, {}, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta, hparams, group_lr,
            grad_scale, found_inf);
}

// master_weights in one pass: masters[i] (float32) is stepped with the grad of the 16-bit
// params[i], and written, rounded to nearest even, to params[i]; bit for bit the three-pass
// path (grads copied to float32, the float32 update, the masters copied to the params).
void sgd_update_master_cpu(at::TensorList masters, at::TensorList grads, at::TensorList bufs,
                           at::TensorList steps, at::TensorList params, const at::Tensor& meta,
                           const at::Tensor& hparams, const at::Tensor& group_lr,
                           const std::optional<at::Tensor>& grad_scale,
                           const std::optional<at::Tensor>& found_inf) {
  const char* op = "sgd_update_master_";
  const BucketView view = check_master(op, masters, params, grads, {{"momentum_buffers", bufs}},
                                       steps, meta, hparams, group_lr);
  sgd_step(op, view, masters, bufs, steps, meta, hparams, group_lr, grad_scale, found_inf);
}

void adam_update_master_cpu(at::TensorList masters, at::TensorList grads, at::TensorList exp_avgs,
                            at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                            at::TensorList steps, at::TensorList params, const at::Tensor& meta,
                            const at::Tensor& hparams, const at::Tensor& group_lr,
                            const std::optional<at::Tensor>& grad_scale,
                            const std::optional<at::Tensor>& found_inf) {
  const char* op = "adam_update_master_";
  const BucketView view = check_master(
      op, masters, params, grads,
      {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}},
      steps, meta, hparams, group_lr);
  adam_step(op, view, masters, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta, hparams,
            group_lr, grad_scale, found_inf);
}

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) {
  m.impl("sgd_update_master_", &sgd_update_master_cpu);
  m.impl("adam_update_master_", &adam_update_master_cpu);
  m.impl("sgd_update_", &sgd_update_cpu);
  m.impl("adam_update_", &adam_update_cpu);
}

}  // namespace fusedlr
