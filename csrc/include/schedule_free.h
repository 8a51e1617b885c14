// Schedule-free SGD / AdamW (Defazio et al. 2024, "The Road Less Scheduled"),
// as the schedulefree package (facebookresearch/schedule_free, 1.4) computes it,
// shared by the CPU kernels, the CUDA kernels and the CUDA emulator.
//
// The optimizer keeps y (the param in train mode), z (the SGD / Adam iterate)
// and, for AdamW, v = exp_avg_sq; x (the evaluation point) is not stored:
//   y = (1 - beta) z + beta x,  x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}.
// Per step k (from 0), per group, on the device (schedule_free_prepare_group):
//   lr_k    = schedule(base_lr, k) * warmup(k),  warmup(k) = min((k + 1) / warmup_steps, 1)
//   lr_max  = max(lr_max, lr_k)                  (lr_max starts at -1)
//   w_k     = (k + 1)^r * lr_max^weight_lr_power,  W_k = W_{k-1} + w_k
//   c_{k+1} = w_k / W_k (0 when W_k = 0),         bc2 = 1 - beta2^(k + 1) (AdamW)
// Per element (schedule_free_element), in the package's order:
//   AdamW: v = beta2 v + (1 - beta2) g^2;  g = g / (sqrt(v / bc2) + eps)
//   g = g + wd * y                               (weight decay at y)
//   y = lerp(y, z, c);  y = y + lr (beta (1 - c) - 1) g;  z = z - lr g
// train() / eval() (mode kToTrain / kToEval): p = lerp(p, z, 1 - beta) gives y from x,
// p = lerp(p, z, 1 - 1 / beta) gives x from y.
#pragma once

#include <cmath>
#include <cstdint>

#include "hd.h"
#include "schedule.h"

namespace fusedlr {

// Group-row fields of the schedule-free optimizers beyond schedule.h's GroupField.
// kMomentum holds SGD's momentum or AdamW's beta1, kDampening AdamW's beta2 (0 for SGD).
enum ScheduleFreeField : int {
  kSfWarmupSteps = 12,
  kSfR = 13,
  kSfWeightLrPower = 14,
};

// Per-group device state row, float64: the step count and the running scalars, then the
// scalars of the current step written by schedule_free_prepare_group for the update.
enum ScheduleFreeState : int {
  kSfK = 0,          // steps taken (the package's group['k'])
  kSfLrMax = 1,      // group['lr_max']
  kSfWeightSum = 2,  // group['weight_sum']
  kSfLr = 3,         // lr of the current step (group['scheduled_lr'])
  kSfCkp1 = 4,       // c_{k+1} = w_k / W_k
  kSfBc2 = 5,        // 1 - beta2^(k + 1)
  kSfStateFields = 8,
};

enum ScheduleFreeMode : int { kSfUpdate = 0, kSfToTrain = 1, kSfToEval = 2 };

// Advances group g by one step: evaluates lr_k, c_{k+1} and bc2 (formulas above) into
// its state row and counts the step. One writer per group; the update reads the row.
FUSEDLR_HD inline void schedule_free_prepare_group(const double* prog, const double* hparams,
                                                   int64_t g, double* state) {
  const double* row = hparams + g * kGroupFields;
  double* st = state + g * kSfStateFields;
  const double k = st[kSfK];
  const int64_t ki = static_cast<int64_t>(k);
  const int64_t spe = static_cast<int64_t>(row[kStepsPerEpoch]);
  const int64_t t = ki / (spe < 1 ? 1 : spe);
  double lr = eval_schedule(prog, static_cast<int64_t>(row[kScheduleRoot]), t, row[kBaseLr]).lr *
              row[kGroupLrScale];
  const double warmup = row[kSfWarmupSteps];
  if (k < warmup) lr = lr * ((k + 1.0) / warmup);
  const double lr_max = lr > st[kSfLrMax] ? lr : st[kSfLrMax];
  const double weight = pow(k + 1.0, row[kSfR]) * pow(lr_max, row[kSfWeightLrPower]);
  const double weight_sum = st[kSfWeightSum] + weight;
  st[kSfLrMax] = lr_max;
  st[kSfWeightSum] = weight_sum;
  st[kSfLr] = lr;
  st[kSfCkp1] = weight_sum == 0.0 ? 0.0 : weight / weight_sum;
  st[kSfBc2] = 1.0 - pow(row[kDampening], k + 1.0);
  st[kSfK] = k + 1.0;
}

struct ScheduleFreeScalars {
  double lr, ckp1, bc2, weight_decay, beta, beta2, eps;
  bool adam;
  int mode;
};

FUSEDLR_INLINE ScheduleFreeScalars make_schedule_free_scalars(const double* row, const double* st,
                                                              bool adam, int mode) {
  ScheduleFreeScalars s;
  s.lr = st[kSfLr];
  s.ckp1 = st[kSfCkp1];
  s.bc2 = st[kSfBc2];
  s.weight_decay = row[kWeightDecay];
  s.beta = row[kMomentum];
  s.beta2 = row[kDampening];
  s.eps = row[kEps];
  s.adam = adam;
  s.mode = mode;
  return s;
}

// Coefficients broadcast to the value type V (scalars rounded to S, the opmath type, as
// torch rounds a Python scalar argument).
template <typename V>
struct ScheduleFreeCoeffs {
  V wd, lerp_w, one_minus_lerp_w, y_coef, neg_lr, beta2, one_minus_beta2, bc2, eps;
  bool has_wd, lerp_low, adam;
  int mode;
  template <typename S>
  static FUSEDLR_INLINE ScheduleFreeCoeffs make(const ScheduleFreeScalars& s) {
    ScheduleFreeCoeffs c;
    double w = s.ckp1;
    if (s.mode == kSfToTrain) w = 1.0 - s.beta;
    if (s.mode == kSfToEval) w = 1.0 - 1.0 / s.beta;
    c.lerp_w = V(S(w));
    c.one_minus_lerp_w = V(S(1) - S(w));
    c.lerp_low = (w < 0 ? -w : w) < 0.5;  // torch's lerp: |w| < 0.5 picks the first form
    c.wd = V(S(s.weight_decay));
    c.y_coef = V(S(s.lr * (s.beta * (1.0 - s.ckp1) - 1.0)));
    c.neg_lr = V(S(-s.lr));
    c.beta2 = V(S(s.beta2));
    c.one_minus_beta2 = V(S(1.0 - s.beta2));
    c.bc2 = V(S(s.bc2));
    c.eps = V(S(s.eps));
    c.has_wd = s.weight_decay != 0.0;
    c.adam = s.adam;
    c.mode = s.mode;
    return c;
  }
};

// torch.lerp(a, b, w): |w| < 0.5 ? a + w (b - a) : b - (b - a)(1 - w).
template <typename V>
FUSEDLR_INLINE V schedule_free_lerp(const V& a, const V& b, const ScheduleFreeCoeffs<V>& c) {
  return c.lerp_low ? a + c.lerp_w * (b - a) : b - (b - a) * c.one_minus_lerp_w;
}

// One element: the update (mode kSfUpdate; v is only touched by AdamW) or a train/eval
// switch of y (p = lerp(p, z, w); grad, z and v unused).
template <typename V, typename Ops>
FUSEDLR_INLINE void schedule_free_element(V& y, V grad, V& z, V& v,
                                          const ScheduleFreeCoeffs<V>& c) {
  if (c.mode != kSfUpdate) {
    y = schedule_free_lerp(y, z, c);
    return;
  }
  V g = grad;
  if (c.adam) {
    v = v * c.beta2 + c.one_minus_beta2 * g * g;
    g = g / (Ops::sqrt(v / c.bc2) + c.eps);
  }
  if (c.has_wd) g = g + c.wd * y;
  y = schedule_free_lerp(y, z, c);
  y = y + c.y_coef * g;
  z = z + c.neg_lr * g;
}

}  // namespace fusedlr
