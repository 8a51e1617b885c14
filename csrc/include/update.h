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
  bool store_grad;    // the divided grads are written back (a grad scaler; see make_sgd_scalars)
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
  bool store_grad;
  bool maximize;
  bool amsgrad;
  bool decoupled;
};

// The ops' grad_scale argument: grads are divided by |grad_scale|; a positive one (a grad
// scaler's scale) also writes the divided grads back, as torch's fused optimizers unscale them in
// place; a negative one (the max_grad_norm clip, 1 / clip coefficient, folded in by the
// optimizer) leaves the grads as they are.
FUSEDLR_INLINE double grad_divisor(double grad_scale) {
  return grad_scale < 0.0 ? -grad_scale : grad_scale;
}
FUSEDLR_INLINE bool grad_stored(double grad_scale) { return grad_scale > 0.0 && grad_scale != 1.0; }

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
  s.grad_scale = grad_divisor(grad_scale);
  s.store_grad = grad_stored(grad_scale);
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
  s.grad_scale = grad_divisor(grad_scale);
  s.store_grad = grad_stored(grad_scale);
  const double n = step + 1.0;
  s.step_size = s.lr / (1.0 - pow(s.beta1, n));
  s.bias_correction2_sqrt = sqrt(1.0 - pow(s.beta2, n));
  return s;
}

// Per-tensor flags of an update, packed in one integer. The element loops of the
// CUDA kernels test bits of it: a bool per flag became a predicate register each,
// and under predicate pressure ptxas re-derived them inside the loop from the
// float64 scalars they came from (fp64 compares and conversions per element).
enum UpdateFlag : uint32_t {
  kFlagMaximize = 1u << 0,
  kFlagHasWd = 1u << 1,      // weight_decay != 0
  kFlagScaled = 1u << 2,     // grad_scale != 1: grads are divided by it
  kFlagNesterov = 1u << 3,   // SGD
  kFlagFirst = 1u << 4,      // SGD: no update applied yet, the buffer starts as the grad
  kFlagHasBuf = 1u << 5,     // SGD: momentum != 0 and a buffer exists
  kFlagAmsgrad = 1u << 6,    // Adam: amsgrad and a max_exp_avg_sq slot exists
  kFlagDecoupled = 1u << 7,  // AdamW
  kFlagLerpLow = 1u << 8,    // Adam: 1 - beta1 < 0.5 (torch's lerp branch)
  kFlagStoreGrad = 1u << 9,  // the divided grads are written back (a grad scaler)
};

FUSEDLR_INLINE uint32_t flag_if(bool cond, uint32_t flag) { return cond ? flag : 0u; }

// The flags as an opaque integer. Without the barrier the device compiler folds
// `(flags & bit) != 0` back into the float64 compare the bit came from and sinks
// that compare into every loop block that tests it (LLVM's CodeGenPrepare sinks
// compares to their users); through it, a test is an integer AND.
FUSEDLR_INLINE uint32_t opaque_flags(uint32_t flags) {
#if defined(__CUDA_ARCH__)
  asm("" : "+r"(flags));
#endif
  return flags;
}

// SGD coefficients of one tensor, computed once (outside any element loop) from the
// float64 scalars and rounded to the value type V (opmath float or double, or a SIMD
// vector of it; S is its scalar type): the same roundings as before they were hoisted.
template <typename V>
struct SgdCoeffs {
  V neg_lr, wd, momentum, one_minus_dampening, grad_scale;
  uint32_t flags;
  FUSEDLR_INLINE bool has(uint32_t f) const { return (flags & f) != 0u; }
  FUSEDLR_INLINE bool scaled() const { return has(kFlagScaled); }
  FUSEDLR_INLINE bool store_grad() const { return has(kFlagStoreGrad); }
  FUSEDLR_INLINE bool first() const { return has(kFlagFirst); }
  FUSEDLR_INLINE bool has_buf() const { return has(kFlagHasBuf); }
  template <typename S>
  static FUSEDLR_INLINE SgdCoeffs make(const SgdScalars& s) {
    SgdCoeffs c;
    c.neg_lr = V(S(-s.lr));
    c.wd = V(S(s.weight_decay));
    c.momentum = V(S(s.momentum));
    c.one_minus_dampening = V(S(1.0 - s.dampening));
    c.grad_scale = V(S(s.grad_scale));
    c.flags = opaque_flags(flag_if(s.nesterov, kFlagNesterov) | flag_if(s.maximize, kFlagMaximize) |
                           flag_if(s.first, kFlagFirst) | flag_if(s.has_buf, kFlagHasBuf) |
                           flag_if(s.weight_decay != 0.0, kFlagHasWd) |
                           flag_if(s.grad_scale != 1.0, kFlagScaled) |
                           flag_if(s.store_grad, kFlagStoreGrad));
    return c;
  }
};

// One SGD element update (torch.optim.SGD, foreach=False):
//   g = ±grad (+ wd * p);  buf = first ? g : momentum * buf + (1 - dampening) * g
//   d = nesterov ? g + momentum * buf : buf;  p = p - lr * d
// `grad` is unscaled in place when a grad scaler is active (as torch's fused kernels do).
template <typename V>
FUSEDLR_INLINE void sgd_element(V& p, V& grad, V& buf, const SgdCoeffs<V>& c) {
  if (c.has(kFlagScaled)) grad = grad / c.grad_scale;
  V g = c.has(kFlagMaximize) ? V(0) - grad : grad;
  if (c.has(kFlagHasWd)) g = g + c.wd * p;
  if (c.has(kFlagHasBuf)) {
    buf = c.has(kFlagFirst) ? g : buf * c.momentum + g * c.one_minus_dampening;
    g = c.has(kFlagNesterov) ? g + buf * c.momentum : buf;
  }
  p = p + g * c.neg_lr;
}

// Adam / AdamW coefficients of one tensor (see SgdCoeffs): step_size and
// sqrt(bias_correction2) stay computed in float64 by make_adam_scalars, once per
// tensor, and are rounded here, as torch rounds its float64 scalars.
template <typename V>
struct AdamCoeffs {
  V wd, decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, eps, neg_step_size, bc2_sqrt,
      grad_scale;
  uint32_t flags;
  FUSEDLR_INLINE bool has(uint32_t f) const { return (flags & f) != 0u; }
  FUSEDLR_INLINE bool scaled() const { return has(kFlagScaled); }
  FUSEDLR_INLINE bool store_grad() const { return has(kFlagStoreGrad); }
  FUSEDLR_INLINE bool amsgrad() const { return has(kFlagAmsgrad); }
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
    c.flags = opaque_flags(
        flag_if(s.maximize, kFlagMaximize) | flag_if(s.amsgrad, kFlagAmsgrad) |
        flag_if(s.decoupled, kFlagDecoupled) | flag_if(s.weight_decay != 0.0, kFlagHasWd) |
        flag_if((1.0 - s.beta1) < 0.5, kFlagLerpLow) | flag_if(s.grad_scale != 1.0, kFlagScaled) |
        flag_if(s.store_grad, kFlagStoreGrad));
    return c;
  }
};

// One Adam / AdamW element update (torch.optim.Adam, foreach=False):
//   g = ±grad;  Adam: g += wd * p;  AdamW: p *= 1 - lr * wd
//   m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g^2
//   vmax = max(vmax, v) (amsgrad);  p -= step_size * m / (sqrt(v or vmax) / bc2_sqrt + eps)
template <typename V, typename Ops>
FUSEDLR_INLINE void adam_element(V& p, V& grad, V& m, V& v, V& vmax, const AdamCoeffs<V>& c) {
  if (c.has(kFlagScaled)) grad = grad / c.grad_scale;
  V g = c.has(kFlagMaximize) ? V(0) - grad : grad;
  if (c.has(kFlagHasWd)) {
    if (c.has(kFlagDecoupled)) {
      p = p * c.decay_factor;
    } else {
      g = g + c.wd * p;
    }
  }
  // torch's lerp: weight w = 1 - beta1; w < 0.5 ? m + w (g - m) : g - (g - m)(1 - w)
  m = c.has(kFlagLerpLow) ? m + c.one_minus_beta1 * (g - m) : g - (g - m) * c.beta1;
  v = v * c.beta2 + c.one_minus_beta2 * g * g;
  V denom;
  if (c.has(kFlagAmsgrad)) {
    vmax = Ops::max(vmax, v);
    denom = Ops::sqrt(vmax) / c.bc2_sqrt + c.eps;
  } else {
    denom = Ops::sqrt(v) / c.bc2_sqrt + c.eps;
  }
  p = p + c.neg_step_size * (m / denom);
}

}  // namespace fusedlr
