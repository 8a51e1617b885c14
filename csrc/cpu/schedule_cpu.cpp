// CPU implementations of fusedlr::eval_schedule_ and fusedlr::schedule_values,
// both calling eval_group / eval_schedule of schedule.h.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "schedule.h"

namespace fusedlr {

namespace {
void check_eval_args(const at::Tensor& program, const at::Tensor& hparams,
                     const at::Tensor& lr_scale, const at::Tensor& counter, const at::Tensor& out) {
  TORCH_CHECK(program.scalar_type() == at::kDouble && program.is_contiguous(),
              "eval_schedule_: program must be a contiguous float64 tensor");
  TORCH_CHECK(hparams.scalar_type() == at::kDouble && hparams.dim() == 2 &&
                  hparams.size(1) == kGroupFields && hparams.is_contiguous(),
              "eval_schedule_: hparams must be a contiguous float64 tensor [groups, ", kGroupFields,
              "]");
  const int64_t groups = hparams.size(0);
  TORCH_CHECK(lr_scale.scalar_type() == at::kDouble && lr_scale.numel() == groups &&
                  lr_scale.is_contiguous(),
              "eval_schedule_: lr_scale must be a contiguous float64 tensor of ", groups,
              " elements");
  TORCH_CHECK(counter.scalar_type() == at::kLong && counter.numel() == 1,
              "eval_schedule_: counter must be an int64 tensor of one element");
  TORCH_CHECK(out.scalar_type() == at::kDouble && out.numel() == 2 * groups && out.is_contiguous(),
              "eval_schedule_: out must be a contiguous float64 tensor of shape [", groups, ", 2]");
  for (const at::Tensor* t : {&program, &lr_scale, &counter, &out}) {
    TORCH_CHECK(t->device() == hparams.device(),
                "eval_schedule_: all arguments must be on one device, got ", t->device(), " and ",
                hparams.device());
  }
}
}  // namespace

void eval_schedule_cpu(const at::Tensor& program, const at::Tensor& hparams,
                       const at::Tensor& lr_scale, const at::Tensor& counter,
                       const at::Tensor& out) {
  check_eval_args(program, hparams, lr_scale, counter, out);
  const double* prog = program.data_ptr<double>();
  const double* hp = hparams.data_ptr<double>();
  const double* scale = lr_scale.data_ptr<double>();
  const int64_t c = counter.data_ptr<int64_t>()[0];
  double* o = out.data_ptr<double>();
  for (int64_t g = 0; g < hparams.size(0); ++g) eval_group(prog, hp, scale, c, g, o + 2 * g);
}

at::Tensor schedule_values_cpu(const at::Tensor& program, int64_t root, double base_lr,
                               int64_t start, int64_t n) {
  TORCH_CHECK(
      program.scalar_type() == at::kDouble && program.is_contiguous() && program.device().is_cpu(),
      "schedule_values: program must be a contiguous float64 CPU tensor");
  TORCH_CHECK(n >= 0, "schedule_values: n must be >= 0, got ", n);
  TORCH_CHECK(start >= 0, "schedule_values: start must be >= 0, got ", start);
  TORCH_CHECK(root < program.numel(), "schedule_values: root ", root, " is outside the program (",
              program.numel(), " doubles)");
  at::Tensor out = at::empty({n, 2}, program.options());
  const double* prog = program.data_ptr<double>();
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const LrMomentum r = eval_schedule(prog, root, start + i, base_lr);
    o[2 * i] = r.lr;
    o[2 * i + 1] = r.momentum;
  }
  return out;
}

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) {
  m.impl("eval_schedule_", &eval_schedule_cpu);
  m.impl("schedule_values", &schedule_values_cpu);
}

}  // namespace fusedlr
