// Argument checks shared by the CPU ops and the CUDA launchers. Every check
// runs before any tensor is written, so a rejected call changes nothing.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/MaybeOwned.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "schedule.h"

namespace fusedlr {

// The bucket's params and grads as the kernels see them: a flat run of numel() elements from
// data_ptr(), in the same order for a param, its grad and its state. A contiguous param, or a
// dense non-overlapping one (channels_last, a transpose) whose state tensors have its strides
// (allocated with preserve_format), is processed in place as flat memory; a grad whose strides
// differ from its param's is read through a copy in the param's layout. Any other param (a
// strided view with gaps, or state saved contiguous) is processed through a contiguous copy
// that write_back() copies back, with contiguous state. Borrowed tensors are the op's
// arguments (no refcount traffic).
struct BucketView {
  std::vector<c10::MaybeOwned<at::Tensor>> params;
  std::vector<c10::MaybeOwned<at::Tensor>> grads;
  std::vector<std::pair<at::Tensor, at::Tensor>> param_copies;  // (original, dense copy)
  std::vector<std::pair<at::Tensor, at::Tensor>> grad_copies;

  void write_back(bool grads_changed) const {
    for (const auto& c : param_copies) c.first.copy_(c.second);
    if (grads_changed) {
      for (const auto& c : grad_copies) c.first.copy_(c.second);
    }
  }
};

// The data pointer of an optional state tensor (an undefined one gives null).
inline void* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

inline at::ScalarType state_dtype(at::ScalarType param) {
  return param == at::kDouble ? at::kDouble : at::kFloat;
}

using NamedList = std::pair<const char*, at::TensorList>;

// Every entry of a bucket needs its own step tensor: the CUDA step pass adds 1 to each
// entry's step with a plain (non-atomic) `*step += 1`, so two entries sharing one step
// would lose an increment there (and count twice on the CPU). Refused, naming both
// entries. One pass when the addresses increase (the usual allocation order), else a sort.
inline void check_unique_steps(const char* op, at::TensorList steps) {
  const size_t n = steps.size();
  std::vector<std::pair<uintptr_t, int64_t>> addr(n);
  bool increasing = true;
  for (size_t i = 0; i < n; ++i) {
    addr[i] = {reinterpret_cast<uintptr_t>(steps[i].data_ptr()), static_cast<int64_t>(i)};
    increasing = increasing && (i == 0 || addr[i - 1].first < addr[i].first);
  }
  if (increasing) return;
  std::sort(addr.begin(), addr.end());
  for (size_t i = 1; i < n; ++i) {
    TORCH_CHECK(addr[i].first != addr[i - 1].first, op, ": steps[",
                std::min(addr[i - 1].second, addr[i].second), "] and steps[",
                std::max(addr[i - 1].second, addr[i].second),
                "] are the same tensor (or share memory); every param needs its own step tensor, "
                "since the steps are advanced without atomics");
  }
}

// per_tensor lists have one state tensor per param; the last list of `states`
// is indexed by the slot column of `meta` (momentum buffers, max_exp_avg_sqs).
inline BucketView check_bucket(const char* op, at::TensorList params, at::TensorList grads,
                               std::vector<NamedList> states, at::TensorList steps,
                               const at::Tensor& meta, const at::Tensor& hparams,
                               const at::Tensor& group_lr) {
  const int64_t n = static_cast<int64_t>(params.size());
  TORCH_CHECK(static_cast<int64_t>(grads.size()) == n && static_cast<int64_t>(steps.size()) == n,
              op, ": params, grads and steps must have the same length, got ", n, ", ",
              grads.size(), " and ", steps.size());
  TORCH_CHECK(hparams.scalar_type() == at::kDouble && hparams.dim() == 2 &&
                  hparams.size(1) == kGroupFields && hparams.is_contiguous(),
              op, ": hparams must be a contiguous float64 tensor of shape [groups, ", kGroupFields,
              "]");
  const int64_t groups = hparams.size(0);
  TORCH_CHECK(group_lr.scalar_type() == at::kDouble && group_lr.numel() == 2 * groups &&
                  group_lr.is_contiguous() && group_lr.device() == hparams.device(),
              op, ": group_lr must be a contiguous float64 tensor of shape [", groups,
              ", 2] on the device of hparams");
  TORCH_CHECK(meta.scalar_type() == at::kLong && meta.device().is_cpu() && meta.dim() == 2 &&
                  meta.size(0) == n && meta.size(1) == 2 && meta.is_contiguous(),
              op, ": meta must be a contiguous CPU int64 tensor of shape [", n, ", 2]");
  const at::TensorList slotted = states.back().second;
  const int64_t* mt = meta.data_ptr<int64_t>();
  const size_t last = states.size() - 1;
  for (size_t k = 0; k < last; ++k) {
    TORCH_CHECK(static_cast<int64_t>(states[k].second.size()) == n, op, ": ", states[k].first,
                " must have one tensor per param (", n, "), got ", states[k].second.size());
  }
  BucketView view;
  view.params.reserve(n);
  view.grads.reserve(n);
  const at::Device device = hparams.device();
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    const at::Tensor& g = grads[i];
    const int64_t grp = mt[2 * i], slot = mt[2 * i + 1];
    TORCH_CHECK(grp >= 0 && grp < groups, op, ": meta[", i, "] names group ", grp, " of ", groups);
    TORCH_CHECK(slot >= -1 && slot < static_cast<int64_t>(slotted.size()), op, ": meta[", i,
                "] names ", states.back().first, " slot ", slot, " of ", slotted.size());
    const at::ScalarType dt = p.scalar_type();
    TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kBFloat16 || dt == at::kHalf, op,
                ": params[", i, "] has dtype ", dt,
                "; fusedlr supports float32, float64, bfloat16 and float16 params");
    TORCH_CHECK(p.device() == device, op, ": params[", i, "] is on ", p.device(),
                " but the bucket's device is ", device);
    TORCH_CHECK(g.layout() == at::kStrided, op, ": grads[", i,
                "] is sparse; fusedlr does not support sparse gradients");
    TORCH_CHECK(g.sizes() == p.sizes(), op, ": grads[", i, "] has shape ", g.sizes(),
                " but params[", i, "] has shape ", p.sizes());
    TORCH_CHECK(g.scalar_type() == dt && g.device() == device, op, ": grads[", i, "] is ",
                g.scalar_type(), " on ", g.device(), " but params[", i, "] is ", dt, " on ",
                device);
    const at::Tensor& st = steps[i];
    TORCH_CHECK(st.scalar_type() == at::kFloat && st.numel() == 1 && st.device() == device, op,
                ": steps[", i, "] must be a float32 scalar tensor on ", device);
    // The layout the kernels use for this entry: the param's own when it is dense and every
    // state tensor has its sizes and strides, else contiguous (the param through a copy).
    const bool p_contiguous = p.is_contiguous();
    bool in_place = p_contiguous || p.is_non_overlapping_and_dense();
    const auto same_layout = [&](const at::Tensor& s) {
      return p_contiguous ? s.is_contiguous()
                          : s.sizes() == p.sizes() && s.strides() == p.strides();
    };
    for (size_t k = 0; k < last && in_place; ++k) in_place = same_layout(states[k].second[i]);
    if (slot >= 0 && in_place) in_place = same_layout(slotted[slot]);
    const auto check_state = [&](const char* name, const at::Tensor& s, int64_t idx) {
      TORCH_CHECK(s.numel() == p.numel() && s.scalar_type() == state_dtype(dt) &&
                      (s.is_contiguous() || (in_place && same_layout(s))) && s.device() == device,
                  op, ": ", name, "[", idx, "] must be a ", state_dtype(dt), " tensor of ",
                  p.numel(), " elements on ", device, ", contiguous or with the sizes and strides ",
                  "of params[", i, "] (a dense param)");
    };
    for (size_t k = 0; k < last; ++k) check_state(states[k].first, states[k].second[i], i);
    if (slot >= 0) check_state(states.back().first, slotted[slot], slot);
    if (in_place) {
      view.params.push_back(c10::MaybeOwned<at::Tensor>::borrowed(p));
    } else {
      view.param_copies.emplace_back(p, p.contiguous());
      view.params.push_back(
          c10::MaybeOwned<at::Tensor>::owned(at::Tensor(view.param_copies.back().second)));
    }
    const at::Tensor& pv = *view.params.back();
    const bool g_matches = pv.is_contiguous() ? g.is_contiguous() : g.strides() == pv.strides();
    if (g_matches) {
      view.grads.push_back(c10::MaybeOwned<at::Tensor>::borrowed(g));
    } else {  // in the layout the kernels use for the param (empty_like keeps a dense layout)
      view.grad_copies.emplace_back(g, at::empty_like(pv).copy_(g));
      view.grads.push_back(
          c10::MaybeOwned<at::Tensor>::owned(at::Tensor(view.grad_copies.back().second)));
    }
  }
  check_unique_steps(op, steps);
  return view;
}

// The one-pass master update's arguments: the 16-bit params, their grads, state, steps and meta
// as a 16-bit bucket (check_bucket), stepped in place (no copy: the masters are the params the
// update reads and writes), and one float32 master per param with its sizes and strides.
inline BucketView check_master(const char* op, at::TensorList masters, at::TensorList params,
                               at::TensorList grads, std::vector<NamedList> states,
                               at::TensorList steps, const at::Tensor& meta,
                               const at::Tensor& hparams, const at::Tensor& group_lr) {
  TORCH_CHECK(masters.size() == params.size(), op, ": masters and params must have the same ",
              "length, got ", masters.size(), " and ", params.size());
  BucketView view =
      check_bucket(op, params, grads, std::move(states), steps, meta, hparams, group_lr);
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    const at::Tensor& m = masters[i];
    TORCH_CHECK(p.scalar_type() == at::kBFloat16 || p.scalar_type() == at::kHalf, op, ": params[",
                i, "] is ", p.scalar_type(), "; the master update takes bfloat16 ",
                "and float16 params");
    TORCH_CHECK(m.scalar_type() == at::kFloat && m.sizes() == p.sizes() &&
                    m.strides() == p.strides() && m.device() == p.device(),
                op, ": masters[", i, "] must be a float32 tensor with the sizes and strides of ",
                "params[", i, "] on ", p.device());
  }
  // (a grad in another layout is read through a copy: grads are not written back here)
  TORCH_CHECK(view.param_copies.empty(), op,
              ": the one-pass master update needs dense params with their state in their layout");
  return view;
}

}  // namespace fusedlr
