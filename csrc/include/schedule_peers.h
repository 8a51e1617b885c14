// Closed forms of the schedules of torch.optim.swa_utils, HF transformers and optax that
// fusedlr names after them (issue 13). Included by schedule_catalog.h after its helpers; the
// kinds are numbered in `CatalogKind` there. Same rules as the catalog: one small function per
// kind, `p` the node's parameters in the order fusedlr/schedules/*.py encode them (torch_like,
// composite, optax_like, hf_like), the arithmetic in the named framework's source order.
#pragma once

namespace fusedlr {

// ---------------------------------------------------------------------------------------------
// torch.optim.swa_utils

// SWALR: p = [swa_lr, anneal_epochs A, strategy (0 cos, 1 linear)]. torch's recursion inverts
// its own previous blend each step, so it traces the closed form
//   u = min(1, t / A) (1 for A = 0), alpha = u (linear) or (1 - cos(pi u)) / 2 (cos),
//   lr = swa_lr * alpha + base * (1 - alpha).
FUSEDLR_HD inline double swalr(const double* p, int64_t t, double base) {
  const double a = p[1];
  const double u = a == 0.0 ? 1.0 : fmin(1.0, static_cast<double>(t) / a);
  const double alpha = p[2] != 0.0 ? u : (1.0 - cos(M_PI * u)) / 2.0;
  return p[0] * alpha + base * (1.0 - alpha);
}

// ---------------------------------------------------------------------------------------------
// Warmup from 0 (HF, timm, optax)

// RelativeWarmup (a wrapper): p = [W, child, prefix]. t < W: base * (t / max(1, W)) (HF's
// ramp); else the child (or base when child < 0) at t - W (prefix) or at t.
FUSEDLR_HD inline double relative_warmup(const double* p, int64_t* t, double base, int64_t* child) {
  const int64_t w = as_index(p[0]);
  if (*t < w) return base * (static_cast<double>(*t) / static_cast<double>(w > 1 ? w : 1));
  if (p[1] < 0.0) return base;
  if (p[2] != 0.0) *t -= w;
  *child = as_index(p[1]);
  return 0.0;
}

// ---------------------------------------------------------------------------------------------
// optax

// piecewise_interpolate_schedule: p = [data, n, type (0 linear, 1 cosine), has_init, init]; data
// holds boundaries b_1 < ... < b_n then scales s_1 .. s_n. v_0 = init (or base), v_i = v_{i-1}
// s_i, b_0 = 0. For b_{i-1} <= t < b_i, pct = (t - b_{i-1}) / max(b_i - b_{i-1}, 1) and
//   linear (v_i - v_{i-1}) pct + v_{i-1},   cosine v_i + (v_{i-1} - v_i) / 2 (cos(pi pct) + 1);
// from b_n on, v_n.
FUSEDLR_INLINE double interpolate(bool cosine, double start, double end, double pct) {
  return cosine ? end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0) : (end - start) * pct + start;
}

FUSEDLR_HD inline double piecewise_interpolate(const double* prog, const double* p, int64_t t,
                                               double base) {
  const double* bounds = prog + as_index(p[0]);
  const int64_t n = as_index(p[1]);
  const double* scales = bounds + n;
  const double td = static_cast<double>(t);
  double start = p[3] != 0.0 ? p[4] : base;
  double lo = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double end = start * scales[i];
    const double hi = bounds[i];
    if (lo <= td && td < hi)
      return interpolate(p[2] != 0.0, start, end, (td - lo) / fmax(hi - lo, 1.0));
    start = end;
    lo = hi;
  }
  return start;
}

// ---------------------------------------------------------------------------------------------
// HF transformers (optimization.py): factors of base, p = [W, N, ...] (num_warmup_steps,
// num_training_steps). The warmup is t / max(1, W) for t < W unless stated; every form holds
// for all t, past N too (HF's lambdas are defined there).

FUSEDLR_INLINE double hf_warmup(int64_t t, int64_t w) {
  return static_cast<double>(t) / static_cast<double>(w > 1 ? w : 1);
}

// (t - W) / max(1, N - W)
FUSEDLR_INLINE double hf_progress(int64_t t, int64_t w, int64_t n) {
  return static_cast<double>(t - w) / static_cast<double>(n - w > 1 ? n - w : 1);
}

// get_linear_schedule_with_warmup: p = [W, N]; max(0, (N - t) / max(1, N - W)).
FUSEDLR_HD inline double linear_with_warmup(const double* p, int64_t t) {
  const int64_t w = as_index(p[0]);
  const int64_t n = as_index(p[1]);
  if (t < w) return hf_warmup(t, w);
  return fmax(0.0, static_cast<double>(n - t) / static_cast<double>(n - w > 1 ? n - w : 1));
}

// get_cosine_schedule_with_warmup / get_cosine_with_min_lr_schedule_with_warmup: p = [W, N,
// num_cycles, min_lr_rate r]; f = (1 + cos(pi * num_cycles * 2 * progress)) / 2,
// max(0, f * (1 - r) + r).
FUSEDLR_HD inline double cosine_with_warmup(const double* p, int64_t t) {
  const int64_t w = as_index(p[0]);
  if (t < w) return hf_warmup(t, w);
  const double progress = hf_progress(t, w, as_index(p[1]));
  const double f = 0.5 * (1.0 + cos(M_PI * p[2] * 2.0 * progress));
  return fmax(0.0, f * (1.0 - p[3]) + p[3]);
}

// get_cosine_with_hard_restarts_schedule_with_warmup: p = [W, N, num_cycles]; 0 once
// progress >= 1, else max(0, (1 + cos(pi * ((num_cycles * progress) mod 1))) / 2).
FUSEDLR_HD inline double cosine_with_hard_restarts(const double* p, int64_t t) {
  const int64_t w = as_index(p[0]);
  if (t < w) return hf_warmup(t, w);
  const double progress = hf_progress(t, w, as_index(p[1]));
  if (progress >= 1.0) return 0.0;
  return fmax(0.0, 0.5 * (1.0 + cos(M_PI * fmod(p[2] * progress, 1.0))));
}

// get_polynomial_decay_schedule_with_warmup: p = [W, N, lr_init, lr_end, power]; past N
// lr_end / lr_init, else ((lr_init - lr_end) * (1 - (t - W) / (N - W))^power + lr_end) / lr_init.
FUSEDLR_HD inline double polynomial_with_warmup(const double* p, int64_t t) {
  const int64_t w = as_index(p[0]);
  const int64_t n = as_index(p[1]);
  if (t < w) return hf_warmup(t, w);
  if (t > n) return p[3] / p[2];
  const double remaining = 1.0 - static_cast<double>(t - w) / static_cast<double>(n - w);
  return ((p[2] - p[3]) * pow(remaining, p[4]) + p[3]) / p[2];
}

// get_cosine_with_min_lr_schedule_with_warmup_lr_rate: p = [W, N, num_cycles, r,
// has_warmup_lr_rate, warmup_lr_rate w0]. In floats: t < W: (t + 1) / max(1, W), or with w0
// w0 + (1 - w0) * t / max(1, W - 1); then progress = (t - W + 1) / max(1, N - W) and the
// cosine of cosine_with_warmup.
FUSEDLR_HD inline double cosine_warmup_with_min_lr(const double* p, int64_t t) {
  const double td = static_cast<double>(t);
  const double w = p[0];
  if (td < w) {
    if (p[4] == 0.0) return (td + 1.0) / fmax(1.0, w);
    return p[5] + (1.0 - p[5]) * td / fmax(1.0, w - 1.0);
  }
  const double progress = (td - w + 1.0) / fmax(1.0, p[1] - w);
  const double f = 0.5 * (1.0 + cos(M_PI * p[2] * 2.0 * progress));
  return fmax(0.0, f * (1.0 - p[3]) + p[3]);
}

}  // namespace fusedlr
