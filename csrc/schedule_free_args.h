// Argument checks of the schedule-free ops (CPU, CUDA and the emulator). Every
// check runs before any write, so a rejected call changes nothing.
#pragma once

#include <ATen/ATen.h>

#include "schedule.h"
#include "schedule_free.h"

namespace fusedlr {

// hparams [groups, kGroupFields] and, when given, state [groups, kSfStateFields].
inline void check_schedule_free_rows(const char* op, const at::Tensor& hparams,
                                     const at::Tensor* state) {
  TORCH_CHECK(hparams.scalar_type() == at::kDouble && hparams.dim() == 2 &&
                  hparams.size(1) == kGroupFields && hparams.is_contiguous(),
              op, ": hparams must be a contiguous float64 tensor of shape [groups, ", kGroupFields,
              "]");
  if (state == nullptr) return;
  TORCH_CHECK(state->scalar_type() == at::kDouble && state->dim() == 2 &&
                  state->size(0) == hparams.size(0) && state->size(1) == kSfStateFields &&
                  state->is_contiguous(),
              op, ": state must be a contiguous float64 tensor of shape [", hparams.size(0), ", ",
              kSfStateFields, "]");
  TORCH_CHECK(state->device() == hparams.device(), op,
              ": state and hparams must be on one device, got ", state->device(), " and ",
              hparams.device());
}

inline void check_schedule_free_program(const char* op, const at::Tensor& program,
                                        const at::Tensor& hparams) {
  TORCH_CHECK(program.scalar_type() == at::kDouble && program.is_contiguous() &&
                  program.device() == hparams.device(),
              op, ": program must be a contiguous float64 tensor on the device of hparams");
}

// The tensors of one schedule-free call. grads: one per param for an update, none for a
// train/eval switch; exp_avg_sqs: one per param (AdamW) or none (SGD, switches).
// visit(i) runs after tensor i passed its checks (while its tensors are in cache): the CPU op
// reads its pointers there.
struct NoVisit {
  void operator()(int64_t) const {}
};

template <typename Visit = NoVisit>
void check_schedule_free_tensors(const char* op, at::TensorList params, at::TensorList grads,
                                 at::TensorList zs, at::TensorList exp_avg_sqs,
                                 const at::Tensor& groups, const at::Tensor& hparams,
                                 const at::Tensor* state, const Visit& visit = Visit()) {
  check_schedule_free_rows(op, hparams, state);
  const int64_t n = static_cast<int64_t>(params.size());
  const int64_t ng = static_cast<int64_t>(grads.size());
  const int64_t nv = static_cast<int64_t>(exp_avg_sqs.size());
  TORCH_CHECK(static_cast<int64_t>(zs.size()) == n, op,
              ": params and zs must have the same length, got ", n, " and ", zs.size());
  TORCH_CHECK(ng == n || ng == 0, op, ": grads must have one tensor per param or none, got ", ng,
              " for ", n, " params");
  TORCH_CHECK(nv == n || nv == 0, op, ": exp_avg_sqs must have one tensor per param or none, got ",
              nv, " for ", n, " params");
  TORCH_CHECK(groups.scalar_type() == at::kLong && groups.dim() == 1 && groups.numel() == n &&
                  groups.device().is_cpu() && groups.is_contiguous(),
              op, ": groups must be a contiguous int64 CPU tensor of ", n, " elements");
  const int64_t* gp = groups.data_ptr<int64_t>();
  const int64_t n_groups = hparams.size(0);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(gp[i] >= 0 && gp[i] < n_groups, op, ": groups[", i, "] = ", gp[i],
                " is not in [0, ", n_groups, ")");
    const at::Tensor& p = params[i];
    const at::ScalarType t = p.scalar_type();
    TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, op,
                ": params[", i, "] has dtype ", t,
                "; supported: float32, float64, float16, bfloat16");
    TORCH_CHECK(p.device() == hparams.device(), op, ": params[", i, "] is on ", p.device(),
                " but hparams is on ", hparams.device());
    TORCH_CHECK(p.is_contiguous() && !p.is_sparse(), op, ": params[", i,
                "] must be a dense contiguous tensor");
    const auto same = [&](const char* name, const at::Tensor& x) {
      TORCH_CHECK(x.defined() && !x.is_sparse() && x.scalar_type() == t && x.sizes() == p.sizes() &&
                      x.device() == p.device() && x.is_contiguous(),
                  op, ": ", name, "[", i, "] must be a dense contiguous ", t, " tensor of shape ",
                  p.sizes(), " on ", p.device(), " like params[", i, "]");
    };
    same("zs", zs[i]);
    if (ng == n) same("grads", grads[i]);
    if (nv == n) same("exp_avg_sqs", exp_avg_sqs[i]);
    visit(i);
  }
}

// Everything the update op checks (CPU and CUDA alike), before any write.
template <typename Visit = NoVisit>
void check_schedule_free_update(const char* op, at::TensorList params, at::TensorList grads,
                                at::TensorList zs, at::TensorList exp_avg_sqs,
                                const at::Tensor& groups, const at::Tensor& program,
                                const at::Tensor& hparams, const at::Tensor& state,
                                const Visit& visit = Visit()) {
  check_schedule_free_tensors(op, params, grads, zs, exp_avg_sqs, groups, hparams, &state, visit);
  check_schedule_free_program(op, program, hparams);
  TORCH_CHECK(grads.size() == params.size(), op, ": grads must have one tensor per param");
}

}  // namespace fusedlr
