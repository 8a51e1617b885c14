// CPU implementations of fusedlr::sgd_update_ and fusedlr::adam_update_.
//
// Every tensor of the bucket is split into work items of at most kChunk
// elements; one at::parallel_for runs over all items of all tensors, so many
// small tensors cost one parallel region, not one each. Each item calls the
// raw-pointer span kernel of the best vector ISA (kernel_table.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "check_args.h"
#include "kernel_table.h"

namespace fusedlr {
namespace {

constexpr int64_t kChunk = 16384;
constexpr int64_t kSerialBelow = 32768;  // elements: smaller steps run on one thread

struct WorkItem {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

std::vector<WorkItem> split_work(const std::vector<at::Tensor>& params, int64_t* total) {
  std::vector<WorkItem> items;
  *total = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(params.size()); ++i) {
    const int64_t n = params[i].numel();
    *total += n;
    for (int64_t b = 0; b < n; b += kChunk) items.push_back({i, b, std::min(n, b + kChunk)});
  }
  return items;
}

template <typename F>
void run_items(const std::vector<WorkItem>& items, int64_t total, const F& f) {
  const int64_t n = static_cast<int64_t>(items.size());
  if (n == 0) return;
  const int64_t grain = total < kSerialBelow ? n : 1;
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) f(items[k]);
  });
}

// Element offset, in units of the state's element size, of byte-typed pointers.
template <typename O>
void* offset_ptr(const at::Tensor& t, int64_t off) {
  return t.defined() ? static_cast<void*>(static_cast<O*>(t.data_ptr()) + off) : nullptr;
}

bool skip_for_inf(const std::optional<at::Tensor>& found_inf) {
  return found_inf.has_value() && found_inf->defined() && found_inf->item<double>() != 0.0;
}

double scale_value(const std::optional<at::Tensor>& grad_scale) {
  return (grad_scale.has_value() && grad_scale->defined()) ? grad_scale->item<double>() : 1.0;
}

}  // namespace

void sgd_update_cpu(at::TensorList params_in, at::TensorList grads_in, at::TensorList bufs,
                    at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                    const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                    const std::optional<at::Tensor>& found_inf) {
  const BucketView view =
      check_bucket("sgd_update_", params_in, grads_in, {{"momentum_buffers", bufs}}, steps, meta,
                   hparams, group_lr);
  if (skip_for_inf(found_inf)) return;
  const double gs = scale_value(grad_scale);
  const int64_t n = static_cast<int64_t>(params_in.size());
  const double* hp = hparams.data_ptr<double>();
  const double* lrm = group_lr.data_ptr<double>();
  const int64_t* mt = meta.data_ptr<int64_t>();

  std::vector<SgdScalars> scalars(n);
  std::vector<at::Tensor> bufs_of(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = mt[2 * i], slot = mt[2 * i + 1];
    const double step = static_cast<double>(steps[i].data_ptr<float>()[0]);
    scalars[i] = make_sgd_scalars(hp + g * kGroupFields, lrm + 2 * g, step, gs);
    TORCH_CHECK(!scalars[i].has_buf || slot >= 0, "sgd_update_: tensor ", i, " of group ", g,
                " has momentum ", scalars[i].momentum, " but no momentum buffer slot");
    scalars[i].has_buf = scalars[i].has_buf && slot >= 0;
    if (scalars[i].has_buf) bufs_of[i] = bufs[slot];
  }

  int64_t total = 0;
  const std::vector<WorkItem> items = split_work(view.params, &total);
  const KernelTable& k = cpu_kernels();
  run_items(items, total, [&](const WorkItem& w) {
    const at::Tensor& p = view.params[w.tensor];
    const at::Tensor& g = view.grads[w.tensor];
    const at::Tensor& b = bufs_of[w.tensor];
    const SgdScalars& s = scalars[w.tensor];
    const int64_t len = w.end - w.begin;
    switch (p.scalar_type()) {
      case at::kFloat:
        k.sgd_f32(p.data_ptr<float>() + w.begin, g.data_ptr<float>() + w.begin,
                  offset_ptr<float>(b, w.begin), len, s);
        break;
      case at::kDouble:
        k.sgd_f64(p.data_ptr<double>() + w.begin, g.data_ptr<double>() + w.begin,
                  offset_ptr<double>(b, w.begin), len, s);
        break;
      case at::kBFloat16:
        k.sgd_bf16(p.data_ptr<at::BFloat16>() + w.begin, g.data_ptr<at::BFloat16>() + w.begin,
                   offset_ptr<float>(b, w.begin), len, s);
        break;
      case at::kHalf:
        k.sgd_f16(p.data_ptr<at::Half>() + w.begin, g.data_ptr<at::Half>() + w.begin,
                  offset_ptr<float>(b, w.begin), len, s);
        break;
      default:
        break;  // rejected by check_bucket
    }
  });
  for (int64_t i = 0; i < n; ++i) {
    if (scalars[i].has_buf) steps[i].data_ptr<float>()[0] += 1.0f;
  }
  view.write_back(gs != 1.0);
}

void adam_update_cpu(at::TensorList params_in, at::TensorList grads_in, at::TensorList exp_avgs,
                     at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                     at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                     const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                     const std::optional<at::Tensor>& found_inf) {
  const BucketView view = check_bucket(
      "adam_update_", params_in, grads_in,
      {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}},
      steps, meta, hparams, group_lr);
  if (skip_for_inf(found_inf)) return;
  const double gs = scale_value(grad_scale);
  const int64_t n = static_cast<int64_t>(params_in.size());
  const double* hp = hparams.data_ptr<double>();
  const double* lrm = group_lr.data_ptr<double>();
  const int64_t* mt = meta.data_ptr<int64_t>();

  std::vector<AdamScalars> scalars(n);
  std::vector<at::Tensor> vmax_of(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t g = mt[2 * i], slot = mt[2 * i + 1];
    const double step = static_cast<double>(steps[i].data_ptr<float>()[0]);
    scalars[i] = make_adam_scalars(hp + g * kGroupFields, lrm + 2 * g, step, gs);
    TORCH_CHECK(!scalars[i].amsgrad || slot >= 0, "adam_update_: tensor ", i, " of group ", g,
                " uses amsgrad but has no max_exp_avg_sq slot");
    if (scalars[i].amsgrad) vmax_of[i] = max_exp_avg_sqs[slot];
  }

  int64_t total = 0;
  const std::vector<WorkItem> items = split_work(view.params, &total);
  const KernelTable& k = cpu_kernels();
  run_items(items, total, [&](const WorkItem& w) {
    const at::Tensor& p = view.params[w.tensor];
    const at::Tensor& g = view.grads[w.tensor];
    const at::Tensor& m = exp_avgs[w.tensor];
    const at::Tensor& v = exp_avg_sqs[w.tensor];
    const at::Tensor& x = vmax_of[w.tensor];
    const AdamScalars& s = scalars[w.tensor];
    const int64_t len = w.end - w.begin;
    switch (p.scalar_type()) {
      case at::kFloat:
        k.adam_f32(p.data_ptr<float>() + w.begin, g.data_ptr<float>() + w.begin,
                   offset_ptr<float>(m, w.begin), offset_ptr<float>(v, w.begin),
                   offset_ptr<float>(x, w.begin), len, s);
        break;
      case at::kDouble:
        k.adam_f64(p.data_ptr<double>() + w.begin, g.data_ptr<double>() + w.begin,
                   offset_ptr<double>(m, w.begin), offset_ptr<double>(v, w.begin),
                   offset_ptr<double>(x, w.begin), len, s);
        break;
      case at::kBFloat16:
        k.adam_bf16(p.data_ptr<at::BFloat16>() + w.begin, g.data_ptr<at::BFloat16>() + w.begin,
                    offset_ptr<float>(m, w.begin), offset_ptr<float>(v, w.begin),
                    offset_ptr<float>(x, w.begin), len, s);
        break;
      case at::kHalf:
        k.adam_f16(p.data_ptr<at::Half>() + w.begin, g.data_ptr<at::Half>() + w.begin,
                   offset_ptr<float>(m, w.begin), offset_ptr<float>(v, w.begin),
                   offset_ptr<float>(x, w.begin), len, s);
        break;
      default:
        break;
    }
  });
  for (int64_t i = 0; i < n; ++i) steps[i].data_ptr<float>()[0] += 1.0f;
  view.write_back(gs != 1.0);
}

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) {
  m.impl("sgd_update_", &sgd_update_cpu);
  m.impl("adam_update_", &adam_update_cpu);
}

}  // namespace fusedlr
