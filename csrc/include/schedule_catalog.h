// The schedule catalog beyond the core kinds of schedule.h: cyclic, one-cycle,
// warm restarts, TensorFlow/Keras/Paddle decays, warmup-stable-decay, ...
// Included by schedule.h after the core declarations; nothing here is used alone.
//
// One small function per kind; `p` points at the node's parameters (p[0] is the
// first parameter after the kind), in the order fusedlr/schedules/*.py encodes them.
// `t` is the schedule time (>= 0), `base` the incoming lr. Every function is
// __host__ __device__: no recursion, no exceptions, only <cmath> and integer math.
// Where a comment names a framework, the arithmetic follows its source order.
//
// A parameter added to an existing kind goes after its old ones and is encoded so that the
// all-zero tail of an old node keeps the old meaning (a value plus a "given" flag).
#pragma once

namespace fusedlr {

// Keep in sync with `Kind` in fusedlr/schedules/_base.py; never renumber.
enum CatalogKind : int {
  kCosineWarmRestarts = 12,
  kCyclic = 13,
  kOneCycle = 14,
  kExponentialDecay = 15,
  kNaturalExpDecay = 16,
  kInverseTimeDecay = 17,
  kPolynomialDecay = 18,
  kCosineDecay = 19,
  kCosineDecayRestarts = 20,
  kLinearCosineDecay = 21,
  kNoisyLinearCosineDecay = 22,
  kPiecewiseConstant = 23,
  kLinearWarmup = 24,
  kWarmupStableDecay = 25,
  kInverseSqrt = 26,
  kWarmupCosine = 27,
  // issue 13: torch swa_utils, HF transformers and optax kinds (schedule_peers.h)
  kSWALR = 28,
  kRelativeWarmup = 29,
  kPiecewiseInterpolate = 30,
  kLinearWithWarmup = 31,
  kCosineWithWarmup = 32,
  kCosineWithHardRestarts = 33,
  kPolynomialWithWarmup = 34,
  kCosineWarmupWithMinLR = 35,
};

// (1 + cos(pi x)) / 2, as 0.5 * (1.0 + cos(pi * x)).
FUSEDLR_INLINE double half_cos(double x) { return 0.5 * (1.0 + cos(M_PI * x)); }

// ---------------------------------------------------------------------------------------------
// torch.optim.lr_scheduler

// CosineAnnealingWarmRestarts: p = [T_0, T_mult, eta_min].
// T_i = T_0 * T_mult^i is the period holding t, T_cur the steps since it began (torch's
// integer recursion: T_cur -= T_i; T_i *= T_mult while T_cur >= T_i);
// lr = eta_min + (base - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2.
FUSEDLR_HD inline double cosine_warm_restarts(const double* p, int64_t t, double base) {
  const int64_t t0 = as_index(p[0]);
  const int64_t mult = as_index(p[1]);
  int64_t cur = t;
  int64_t ti = t0;
  if (mult == 1) {
    cur = t % t0;
  } else {
    while (cur >= ti) {  // at most ~63 rounds: T_i at least doubles
      cur -= ti;
      ti *= mult;
    }
  }
  const double eta_min = p[2];
  return eta_min + (base - eta_min) *
                       (1.0 + cos(M_PI * static_cast<double>(cur) / static_cast<double>(ti))) / 2.0;
}

// CyclicLR: p = [base_lr, max_lr, up, down, mode, gamma, scale_mode, table, n_table,
//                cycle_momentum, base_momentum, max_momentum].
// total = up + down, r = up / total, cycle = floor(1 + t / total), x = 1 + t / total - cycle,
// f = x / r if x <= r else (x - 1) / (r - 1);
// scale = 1 (triangular), 1 / 2^(cycle - 1) (triangular2), gamma^t (exp_range), or the
// tabulated scale_fn at cycle - 1 / t (held past the table);
// lr = base_lr + (max_lr - base_lr) * f * scale,
// momentum = max_momentum - (max_momentum - base_momentum) * f * scale.
enum CyclicMode : int { kTriangular = 0, kTriangular2 = 1, kExpRange = 2, kScaleTable = 3 };

FUSEDLR_HD inline double cyclic(const double* prog, const double* p, int64_t t, double* momentum) {
  const double td = static_cast<double>(t);
  const double total = p[2] + p[3];
  const double ratio = p[2] / total;
  const double cycle = floor(1.0 + td / total);
  const double x = 1.0 + td / total - cycle;
  const double f = x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
  double scale = 1.0;
  switch (static_cast<int>(p[4])) {
    case kTriangular2:
      scale = 1.0 / pow(2.0, cycle - 1.0);
      break;
    case kExpRange:
      scale = pow(p[5], td);
      break;
    case kScaleTable: {
      const double* tab = prog + as_index(p[7]);
      const int64_t n = as_index(p[8]);
      int64_t i = p[6] == 0.0 ? static_cast<int64_t>(cycle) - 1 : t;  // scale_mode cycle / iter
      i = i < 0 ? 0 : (i < n ? i : n - 1);
      scale = tab[i];
      break;
    }
    default:
      break;
  }
  if (p[9] != 0.0) *momentum = p[11] - (p[11] - p[10]) * f * scale;
  return p[0] + (p[1] - p[0]) * f * scale;
}

// OneCycleLR: p = [max_lr, div_factor, final_div_factor, total_steps, pct_start, anneal
//                  (0 cos, 1 linear), three_phase, cycle_momentum, base_momentum, max_momentum].
// initial = max_lr / div_factor, min = initial / final_div_factor. Phases end at
// pct * total - 1 (initial -> max; momentum max -> base) and total - 1 (max -> min;
// base -> max), or with three_phase at pct * total - 1, 2 * pct * total - 2 (max -> initial;
// base -> max) and total - 1 (initial -> min; max -> max). The first phase with t <= end (or
// the last) gives pct = (t - start) / (end - start) and
//   cos: b + (a - b) / 2 * (cos(pi pct) + 1),   linear: (b - a) * pct + a.
// t == total_steps extrapolates the last phase as torch does; past it torch raises, here
// t is clamped to total_steps - 1 (min lr, final momentum).
FUSEDLR_INLINE double one_cycle_anneal(bool linear, double a, double b, double pct) {
  return linear ? (b - a) * pct + a : b + (a - b) / 2.0 * (cos(M_PI * pct) + 1.0);
}

FUSEDLR_HD inline double one_cycle(const double* p, int64_t t, double* momentum) {
  const double total = p[3];
  double td = static_cast<double>(t);
  if (td > total) td = total - 1.0;
  const double max_lr = p[0];
  const double initial = max_lr / p[1];
  const double min_lr = initial / p[2];
  const double base_m = p[8];
  const double max_m = p[9];
  const bool three = p[6] != 0.0;
  const double end0 = p[4] * total - 1.0;
  const double end1 = 2.0 * p[4] * total - 2.0;  // three_phase only
  // The phase holding t: [start, end], lr from a to b, momentum from ma to mb.
  // Phase 1 (warm-up): initial -> max, momentum max -> base.
  double start = 0.0, end = end0, a = initial, b = max_lr, ma = max_m, mb = base_m;
  if (td > end0 && three && td <= end1) {  // three_phase middle: max -> initial, base -> max
    start = end0;
    end = end1;
    a = max_lr;
    b = initial;
    ma = base_m;
    mb = max_m;
  } else if (td > end0) {  // last: max (initial if three_phase) -> min, momentum -> max
    start = three ? end1 : end0;
    end = total - 1.0;
    a = three ? initial : max_lr;
    b = min_lr;
    ma = three ? max_m : base_m;
    mb = max_m;
  }
  const double pct = (td - start) / (end - start);
  const bool linear = p[5] != 0.0;
  if (p[7] != 0.0) *momentum = one_cycle_anneal(linear, ma, mb, pct);
  return one_cycle_anneal(linear, a, b, pct);
}

// ---------------------------------------------------------------------------------------------
// TensorFlow / Keras (the group's lr is initial_learning_rate)

// p = t / decay_steps, floored when staircase (p[2] != 0).
FUSEDLR_INLINE double decay_progress(const double* p, int64_t t) {
  const double q = static_cast<double>(t) / p[0];
  return p[2] != 0.0 ? floor(q) : q;
}

// ExponentialDecay (Keras; optax exponential_decay): p = [decay_steps, decay_rate, staircase,
// transition_begin, has_end_value, end_value]. c = t - transition_begin, q = c / decay_steps
// (floored when staircase); base if c <= 0 else base * decay_rate^q; with an end_value, clipped
// to max(., end_value) if decay_rate < 1 else min(., end_value) (optax's order).
FUSEDLR_HD inline double exponential_decay(const double* p, int64_t t, double base) {
  const double count = static_cast<double>(t) - p[3];
  double q = count / p[0];
  if (p[2] != 0.0) q = floor(q);
  double v = count <= 0.0 ? base : base * pow(p[1], q);
  if (p[4] != 0.0) v = p[1] < 1.0 ? fmax(v, p[5]) : fmin(v, p[5]);
  return v;
}

// NaturalExpDecay (TF1 natural_exp_decay): base * exp(-decay_rate * p).
FUSEDLR_HD inline double natural_exp_decay(const double* p, int64_t t, double base) {
  return base * exp(-p[1] * decay_progress(p, t));
}

// InverseTimeDecay: base / (1 + decay_rate * p).
FUSEDLR_HD inline double inverse_time_decay(const double* p, int64_t t, double base) {
  return base / (1.0 + p[1] * decay_progress(p, t));
}

// PolynomialDecay: p = [decay_steps, end_learning_rate, power, cycle].
// (base - end) * (1 - s / H)^power + end; without cycle s = min(t, D), H = D; with cycle
// s = t, H = D * ceil(t / D) (H = D at t = 0).
FUSEDLR_HD inline double polynomial_decay(const double* p, int64_t t, double base) {
  double horizon = p[0];
  double s = static_cast<double>(t);
  if (p[3] != 0.0) {
    horizon *= t == 0 ? 1.0 : ceil(s / p[0]);
  } else {
    s = fmin(s, horizon);
  }
  return (base - p[1]) * pow(1.0 - s / horizon, p[2]) + p[1];
}

// CosineDecay: p = [decay_steps, alpha, exponent, has_exponent]; s = min(t, D);
// base * ((1 - alpha) * ((1 + cos(pi s / D)) / 2)^exponent + alpha) (exponent: optax's, 1 when
// not given).
FUSEDLR_HD inline double cosine_decay(const double* p, int64_t t, double base) {
  const double s = fmin(static_cast<double>(t), p[0]);
  const double c = half_cos(s / p[0]);
  return base * ((1.0 - p[1]) * (p[3] != 0.0 ? pow(c, p[2]) : c) + p[1]);
}

// CosineDecayRestarts: p = [first_decay_steps, t_mul, m_mul, alpha]. c = t / first;
// period i covers S_i <= c < S_{i+1}, S_i = (1 - t_mul^i) / (1 - t_mul) (S_i = i if t_mul = 1);
// f = (c - S_i) / t_mul^i; base * ((1 - alpha) * m_mul^i * (1 + cos(pi f)) / 2 + alpha).
// i is Keras' floor(log(1 - c (1 - t_mul)) / log(t_mul)), then corrected so that S_i <= c <
// S_{i+1} holds exactly (the log can round one period early at a restart step).
FUSEDLR_INLINE double restart_start(double t_mul, double i) {
  return (1.0 - pow(t_mul, i)) / (1.0 - t_mul);
}

FUSEDLR_HD inline double cosine_decay_restarts(const double* p, int64_t t, double base) {
  const double c = static_cast<double>(t) / p[0];
  const double t_mul = p[1];
  double i = 0.0;
  double frac = 0.0;
  if (t_mul == 1.0) {
    i = floor(c);
    frac = c - i;
  } else {
    i = fmax(0.0, floor(log(1.0 - c * (1.0 - t_mul)) / log(t_mul)));
    while (i > 0.0 && c < restart_start(t_mul, i)) i -= 1.0;
    while (c >= restart_start(t_mul, i + 1.0)) i += 1.0;
    frac = (c - restart_start(t_mul, i)) / pow(t_mul, i);
  }
  const double cosine = 0.5 * pow(p[2], i) * (1.0 + cos(M_PI * frac));
  return base * ((1.0 - p[3]) * cosine + p[3]);
}

// LinearCosineDecay (TF1): p = [decay_steps, num_periods, alpha, beta]; s = min(t, D),
// linear = (D - s) / D, cosine = (1 + cos(pi * 2 * num_periods * s / D)) / 2,
// base * ((alpha + linear) * cosine + beta).
FUSEDLR_HD inline double linear_cosine_decay(const double* p, int64_t t, double base) {
  const double s = fmin(static_cast<double>(t), p[0]);
  const double linear = (p[0] - s) / p[0];
  const double cosine = half_cos(2.0 * p[1] * s / p[0]);
  return base * ((p[2] + linear) * cosine + p[3]);
}

// Counter-based standard normal (fusedlr.reference.noise_normal): x = x0 + 2t (mod 2^64) with
// x0 = seed * 0x9E3779B97F4A7C15, u1 = unit(splitmix64(x)), u2 = unit(splitmix64(x + 1)),
// unit(h) = ((h >> 12) + 0.5) / 2^52, z = sqrt(-2 ln u1) * cos(2 pi u2). (2t: neighbouring
// steps share no uniform draw.)
FUSEDLR_INLINE uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

FUSEDLR_INLINE double open_unit(uint64_t h) {
  return (static_cast<double>(h >> 12) + 0.5) * (1.0 / 4503599627370496.0);  // 2^-52
}

FUSEDLR_INLINE double noise_normal(uint64_t x0, int64_t t) {
  const uint64_t x = x0 + 2 * static_cast<uint64_t>(t);
  const double u1 = open_unit(splitmix64(x));
  const double u2 = open_unit(splitmix64(x + 1));
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

// NoisyLinearCosineDecay (TF1): p = [decay_steps, initial_variance, variance_decay,
// num_periods, alpha, beta, x0_hi, x0_lo] (x0 = seed * 0x9E3779B97F4A7C15 mod 2^64 as two
// 32-bit halves). LinearCosineDecay with linear + sqrt(initial_variance / (1 + s)^variance_decay)
// * noise_normal(seed, t) in place of linear.
FUSEDLR_HD inline double noisy_linear_cosine_decay(const double* p, int64_t t, double base) {
  const double s = fmin(static_cast<double>(t), p[0]);
  const double linear = (p[0] - s) / p[0];
  const double cosine = half_cos(2.0 * p[3] * s / p[0]);
  const double std_dev = sqrt(p[1] / pow(1.0 + s, p[2]));
  const uint64_t x0 = (static_cast<uint64_t>(p[6]) << 32) | static_cast<uint64_t>(p[7]);
  const double noisy = linear + std_dev * noise_normal(x0, t);
  return base * ((p[4] + noisy) * cosine + p[5]);
}

// PiecewiseConstant (Keras PiecewiseConstantDecay, absolute): p = [data, n]; data holds
// boundaries b_0..b_{n-1} then values v_0..v_n; lr = v_k, k = #{i : b_i < t}
// (so t <= b_0 gives v_0; Paddle's PiecewiseDecay switches one step earlier).
FUSEDLR_HD inline double piecewise_constant(const double* prog, const double* p, int64_t t) {
  const double* bounds = prog + as_index(p[0]);
  const int64_t n = as_index(p[1]);
  const double td = static_cast<double>(t);
  int64_t k = 0;
  while (k < n && bounds[k] < td) ++k;
  return bounds[n + k];
}

// ---------------------------------------------------------------------------------------------
// HF transformers / optax

// WarmupStableDecay (HF get_wsd_schedule): p = [W, S, D, r, warmup_type, decay_type, num_cycles,
// has_num_cycles], types 0 linear, 1 cosine, 2 1-sqrt; num_cycles 0.5 when not given. Factor:
//   t < W:         q = t / max(1, W); linear q, cosine (1 - cos(pi q)) / 2, 1-sqrt 1 - sqrt(1 - q);
//   t < W + S:     1;
//   t < W + S + D: q = (t - W - S) / max(1, D); linear 1 - q,
//                  cosine (1 + cos(pi * num_cycles * 2 * q)) / 2, 1-sqrt 1 - sqrt(q);
//   warmup / decay factors f become max(0, f * (1 - r) + r); after the decay: r.
FUSEDLR_HD inline double warmup_stable_decay(const double* p, int64_t t, double base) {
  const int64_t w = as_index(p[0]);
  const int64_t s = as_index(p[1]);
  const int64_t d = as_index(p[2]);
  const double r = p[3];
  double f = 0.0;
  if (t < w) {
    const double q = static_cast<double>(t) / static_cast<double>(w > 1 ? w : 1);
    const int kind = static_cast<int>(p[4]);
    f = kind == 0 ? q : (kind == 1 ? 0.5 * (1.0 - cos(M_PI * q)) : 1.0 - sqrt(1.0 - q));
  } else if (t < w + s) {
    return base * 1.0;
  } else if (t < w + s + d) {
    const double q = static_cast<double>(t - w - s) / static_cast<double>(d > 1 ? d : 1);
    const int kind = static_cast<int>(p[5]);
    const double cycles = p[7] != 0.0 ? p[6] : 0.5;
    f = kind == 0 ? 1.0 - q
                  : (kind == 1 ? 0.5 * (1.0 + cos(M_PI * cycles * 2.0 * q)) : 1.0 - sqrt(q));
  } else {
    return base * r;
  }
  return base * fmax(0.0, f * (1.0 - r) + r);
}

// InverseSqrt (HF get_inverse_sqrt_schedule): p = [W, timescale];
// t < W: base * t / max(1, W); else base / sqrt((t + timescale - W) / timescale).
FUSEDLR_HD inline double inverse_sqrt(const double* p, int64_t t, double base) {
  const int64_t w = as_index(p[0]);
  const int64_t ts = as_index(p[1]);
  if (t < w) return base * (static_cast<double>(t) / static_cast<double>(w > 1 ? w : 1));
  return base * (1.0 / sqrt(static_cast<double>(t + ts - w) / static_cast<double>(ts)));
}

// WarmupCosine (optax warmup_cosine_decay_schedule, init 0, peak base, end end_factor * base):
// p = [W, total_steps, end_factor, exponent, has_exponent]. t < W: (0 - base) * (1 - t / W) +
// base; else with D = total - W, k = min(t - W, D), alpha = end_value / base (0 if base == 0):
// base * ((1 - alpha) * ((1 + cos(pi k / D)) / 2)^exponent + alpha) (exponent 1 if not given).
FUSEDLR_HD inline double warmup_cosine(const double* p, int64_t t, double base) {
  const int64_t w = as_index(p[0]);
  const int64_t total = as_index(p[1]);
  if (t < w) return (0.0 - base) * (1.0 - static_cast<double>(t) / static_cast<double>(w)) + base;
  const double end_value = p[2] * base;
  const double alpha = base == 0.0 ? 0.0 : end_value / base;
  const int64_t k = (t - w) < (total - w) ? (t - w) : (total - w);
  const double c = half_cos(static_cast<double>(k) / static_cast<double>(total - w));
  return base * ((1.0 - alpha) * (p[4] != 0.0 ? pow(c, p[3]) : c) + alpha);
}

}  // namespace fusedlr

#include "schedule_peers.h"

namespace fusedlr {

// ---------------------------------------------------------------------------------------------
// Hooks called by eval_schedule / eval_leaf (schedule.h)

// Kinds whose evaluation may tail-call a child (LinearWarmup, RelativeWarmup).
FUSEDLR_INLINE bool is_catalog_wrapper(int kind) {
  return kind == kLinearWarmup || kind == kRelativeWarmup;
}

// A wrapper either returns a value (*child left < 0) or sets *child and
// shifts *t for the child.
// LinearWarmup (Paddle): p = [W, start_lr, end_lr, child, constant]. t < W:
// (end_lr - start_lr) * t / W + start_lr (absolute); else the child at t - W, or the constant
// absolute lr when there is no child (child < 0).
FUSEDLR_HD inline double eval_catalog_wrapper(const double* prog, int64_t node, int64_t* t,
                                              double base, int64_t* child) {
  const double* p = prog + node + 1;
  *child = -1;
  if (static_cast<int>(prog[node]) == kRelativeWarmup) return relative_warmup(p, t, base, child);
  if (static_cast<int>(prog[node]) != kLinearWarmup) return sched_nan();
  const int64_t w = as_index(p[0]);
  if (*t < w) return (p[2] - p[1]) * static_cast<double>(*t) / static_cast<double>(w) + p[1];
  if (p[3] < 0.0) return p[4];
  *t -= w;
  *child = as_index(p[3]);
  return 0.0;
}

// Leaf kinds of the catalog. Unknown kinds evaluate to NaN.
FUSEDLR_HD inline double eval_catalog_leaf(const double* prog, int64_t node, int64_t t, double base,
                                           double* momentum) {
  const double* p = prog + node + 1;
  switch (static_cast<int>(prog[node])) {
    case kCosineWarmRestarts:
      return cosine_warm_restarts(p, t, base);
    case kCyclic:
      return cyclic(prog, p, t, momentum);
    case kOneCycle:
      return one_cycle(p, t, momentum);
    case kExponentialDecay:
      return exponential_decay(p, t, base);
    case kNaturalExpDecay:
      return natural_exp_decay(p, t, base);
    case kInverseTimeDecay:
      return inverse_time_decay(p, t, base);
    case kPolynomialDecay:
      return polynomial_decay(p, t, base);
    case kCosineDecay:
      return cosine_decay(p, t, base);
    case kCosineDecayRestarts:
      return cosine_decay_restarts(p, t, base);
    case kLinearCosineDecay:
      return linear_cosine_decay(p, t, base);
    case kNoisyLinearCosineDecay:
      return noisy_linear_cosine_decay(p, t, base);
    case kPiecewiseConstant:
      return piecewise_constant(prog, p, t);
    case kWarmupStableDecay:
      return warmup_stable_decay(p, t, base);
    case kInverseSqrt:
      return inverse_sqrt(p, t, base);
    case kWarmupCosine:
      return warmup_cosine(p, t, base);
    case kSWALR:
      return swalr(p, t, base);
    case kPiecewiseInterpolate:
      return piecewise_interpolate(prog, p, t, base);
    case kLinearWithWarmup:
      return base * linear_with_warmup(p, t);
    case kCosineWithWarmup:
      return base * cosine_with_warmup(p, t);
    case kCosineWithHardRestarts:
      return base * cosine_with_hard_restarts(p, t);
    case kPolynomialWithWarmup:
      return base * polynomial_with_warmup(p, t);
    case kCosineWarmupWithMinLR:
      return base * cosine_warmup_with_min_lr(p, t);
    default:
      return sched_nan();
  }
}

}  // namespace fusedlr
