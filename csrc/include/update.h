// Per-element SGD / Adam / AdamW math, shared by the CPU kernels (scalar and
// at::vec), the CUDA kernels and the CUDA emulator. Written once, templated on
// the value type V (float, double, or a SIMD vector with arithmetic operators)
// and on a traits type that supplies sqrt and max for V.
//
// The order of operations follows torch.optim's single-tensor implementations
// (foreach=False), so float64 results agree with torch to rounding.
#pragma once

#include <cmath>
#include <cstdint>

#include "hd.h"
#include "schedule.h"

namespace fusedlr {

// sqrt / max for scalar value types. SIMD types get their own traits.
template <typename V>
struct ScalarOps {
  static FUSEDLR_INLINE V sqrt(V x) { return std::sqrt(x); }
  // NaN-propagating, as torch.maximum.
  static FUSEDLR_INLINE V max(V a, V b) { return (a < b || b != b) ? b : a; }
};

// Per-tensor scalars of one SGD update, derived from the group row, the
// evaluated (lr, momentum) and the tensor's own step count.
struct SgdScalars {
  double lr;
  double weight_decay;
  double momentum;
  double dampening;
  double grad_scale;  // grads are divided by it (1 when there is no scaler)
  bool nesterov;
  bool maximize;
  bool first;    // no update applied yet: momentum buffer starts as the grad
  bool has_buf;  // momentum != 0 (a buffer exists for this tensor)
};

struct AdamScalars {
  double lr;
  double weight_decay;
  double beta1;
  double beta2;
  double eps;
  double step_size;              // lr / (1 - beta1^step)
  double bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  double grad_scale;
  bool maximize;
  bool amsgrad;
  bool decoupled;
};

FUSEDLR_INLINE SgdScalars make_sgd_scalars(const double* row, const double* lr_mom, double step,
                                           double grad_scale) {
  SgdScalars s;
  s.lr = lr_mom[0];
  s.momentum = lr_mom[1];
  s.weight_decay = row[kWeightDecay];
  s.dampening = row[kDampening];
  s.nesterov = row[kNesterov] != 0.0;
  s.maximize = row[kMaximize] != 0.0;
  s.first = step == 0.0;  // for SGD, `step` counts momentum-buffer updates
  s.has_buf = s.momentum != 0.0;
  s.grad_scale = grad_scale;
  return s;
}

// `step` is the tensor's step count before this update; the update uses step + 1.
FUSEDLR_INLINE AdamScalars make_adam_scalars(const double* row, const double* lr_mom, double step,
                                             double grad_scale) {
  AdamScalars s;
  s.lr = lr_mom[0];
  s.beta1 = lr_mom[1];
  s.beta2 = row[kDampening];
  s.eps = row[kEps];
  s.weight_decay = row[kWeightDecay];
  s.maximize = row[kMaximize] != 0.0;
  s.amsgrad = row[kAmsgrad] != 0.0;
  s.decoupled = row[kDecoupled] != 0.0;
  s.grad_scale = grad_scale;
  const double n = step + 1.0;
  s.step_size = s.lr / (1.0 - pow(s.beta1, n));
  s.bias_correction2_sqrt = sqrt(1.0 - pow(s.beta2, n));
  return s;
}

// SGD coefficients broadcast to the value type (opmath float or double).
template <typename V>
struct SgdCoeffs {
  V neg_lr, wd, momentum, one_minus_dampening, grad_scale;
  bool nesterov, maximize, first, has_buf, has_wd, scaled;
  template <typename S>
  static FUSEDLR_INLINE SgdCoeffs make(const SgdScalars& s) {
    SgdCoeffs c;
    c.neg_lr = V(S(-s.lr));
    c.wd = V(S(s.weight_decay));
    c.momentum = V(S(s.momentum));
    c.one_minus_dampening = V(S(1.0 - s.dampening));
    c.grad_scale = V(S(s.grad_scale));
    c.nesterov = s.nesterov;
    c.maximize = s.maximize;
    c.first = s.first;
    c.has_buf = s.has_buf;
    c.has_wd = s.weight_decay != 0.0;
    c.scaled = s.grad_scale != 1.0;
    return c;
  }
};

// One SGD element update (torch.optim.SGD, foreach=False):
//   g = ±grad (+ wd * p);  buf = first ? g : momentum * buf + (1 - dampening) * g
//   d = nesterov ? g + momentum * buf : buf;  p = p - lr * d
// `grad` is unscaled in place when a grad scaler is active (as torch's fused kernels do).
template <typename V>
FUSEDLR_INLINE void sgd_element(V& p, V& grad, V& buf, const SgdCoeffs<V>& c) {
  if (c.scaled) grad = grad / c.grad_scale;
  V g = c.maximize ? V(0) - grad : grad;
  if (c.has_wd) g = g + c.wd * p;
  if (c.has_buf) {
    buf = c.first ? g : buf * c.momentum + g * c.one_minus_dampening;
    g = c.nesterov ? g + buf * c.momentum : buf;
  }
  p = p + g * c.neg_lr;
}

template <typename V>
struct AdamCoeffs {
  V wd, decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, neg_step_size, bc2_sqrt,
      grad_scale;
  bool maximize, amsgrad, decoupled, has_wd, lerp_low, scaled;
  template <typename S>
  static FUSEDLR_INLINE AdamCoeffs make(const AdamScalars& s) {
    AdamCoeffs c;
    c.wd = V(S(s.weight_decay));
    c.decay_factor = V(S(1.0 - s.lr * s.weight_decay));
    c.beta1 = V(S(s.beta1));
    c.one_minus_beta1 = V(S(1.0 - s.beta1));
    c.beta2 = V(S(s.beta2));
    c.one_minus_beta2 = V(S(1.0 - s.beta2));
    c.eps = V(S(s.eps));
    c.neg_step_size = V(S(-s.step_size));
    c.bc2_sqrt = V(S(s.bias_correction2_sqrt));
    c.grad_scale = V(S(s.grad_scale));
    c.maximize = s.maximize;
    c.amsgrad = s.amsgrad;
    c.decoupled = s.decoupled;
    c.has_wd = s.weight_decay != 0.0;
    c.lerp_low = (1.0 - s.beta1) < 0.5;
    c.scaled = s.grad_scale != 1.0;
    return c;
  }
};

// One Adam / AdamW element update (torch.optim.Adam, foreach=False):
//   g = ±grad;  Adam: g += wd * p;  AdamW: p *= 1 - lr * wd
//   m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g^2
//   vmax = max(vmax, v) (amsgrad);  p -= step_size * m / (sqrt(v or vmax) / bc2_sqrt + eps)
template <typename V, typename Ops>
FUSEDLR_INLINE void adam_element(V& p, V& grad, V& m, V& v, V& vmax, const AdamCoeffs<V>& c) {
  if (c.scaled) grad = grad / c.grad_scale;
  V g = c.maximize ? V(0) - grad : grad;
  if (c.has_wd) {
    if (c.decoupled) {
      p = p * c.decay_factor;
    } else {
      g = g + c.wd * p;
    }
  }
  // torch's lerp: weight w = 1 - beta1; w < 0.5 ? m + w (g - m) : g - (g - m)(1 - w)
  m = c.lerp_low ? m + c.one_minus_beta1 * (g - m) : g - (g - m) * c.beta1;
  v = v * c.beta2 + c.one_minus_beta2 * g * g;
  V denom;
  if (c.amsgrad) {
    vmax = Ops::max(vmax, v);
    denom = Ops::sqrt(vmax) / c.bc2_sqrt + c.eps;
  } else {
    denom = Ops::sqrt(v) / c.bc2_sqrt + c.eps;
  }
  p = p + c.neg_step_size * (m / denom);
}

}  // namespace fusedlr
