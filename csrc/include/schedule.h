// Closed-form learning-rate schedules, evaluated from a packed float64 program.
//
// One source of truth: the CPU kernels, the CUDA kernels and the host-side
// `Schedule.values()` all call `eval_schedule` below.
//
// Program layout (built by fusedlr/schedules.py, `ProgramBuilder`):
//   a flat float64 array. A node is kNodeWidth doubles: [kind, p0, p1, ...].
//   Nodes refer to children and to variable-length data (milestones, tables)
//   by absolute offsets into the same array (exact as doubles below 2^53).
//
// Evaluation threads a "base" lr through the tree: a leaf maps (t, base) to an
// lr; SequentialLR / LinearWarmup pick a child and shift t (a tail call);
// ChainedScheduler applies its children in turn, each child's output being the
// next child's base (torch's chained recursion, in closed form). Chained nodes
// nest up to kMaxChainDepth; the Python side validates the bound.
#pragma once

#include <cmath>
#include <cstdint>

#include "hd.h"

namespace fusedlr {

constexpr int kNodeWidth = 16;
constexpr int kMaxChainDepth = 8;

// Keep in sync with fusedlr/schedules.py (`Kind`). Values are stored in the
// program, so never renumber an existing kind.
enum ScheduleKind : int {
  kConstant = 0,
  kStepLR = 1,
  kMultiStepLR = 2,
  kConstantLR = 3,
  kLinearLR = 4,
  kExponentialLR = 5,
  kPolynomialLR = 6,
  kCosineAnnealingLR = 7,
  kSequential = 8,
  kChained = 9,
  kNoamDecay = 10,
  kTable = 11,
  // 12..63 reserved for the schedule catalog (schedule_catalog.h).
};

// Result of one evaluation: the lr, and the momentum (SGD momentum / Adam
// beta1) the schedule imposes, or NaN when it imposes none.
struct LrMomentum {
  double lr;
  double momentum;
};

FUSEDLR_INLINE double sched_nan() { return NAN; }

FUSEDLR_INLINE int64_t as_index(double x) { return static_cast<int64_t>(x); }

// floor(a / b) for b > 0, on int64 time.
FUSEDLR_INLINE int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace fusedlr

#include "schedule_catalog.h"

namespace fusedlr {

// Leaf schedules: lr at time t for a group whose incoming lr is `base`.
// Writes *momentum when the schedule imposes one.
FUSEDLR_HD inline double eval_leaf(const double* prog, int64_t node, int64_t t, double base,
                                   double* momentum) {
  const double* p = prog + node + 1;
  const double td = static_cast<double>(t);
  switch (static_cast<int>(prog[node])) {
    case kConstant:
      return base;
    case kStepLR: {  // base * gamma^floor(t / step_size)
      const int64_t k = floor_div(t, as_index(p[0]));
      return base * pow(p[1], static_cast<double>(k));
    }
    case kMultiStepLR: {  // base * gamma^#{milestones m : m <= t}
      const double* ms = prog + as_index(p[1]);
      const int64_t n = as_index(p[2]);
      int64_t count = 0;
      for (int64_t i = 0; i < n; ++i) count += (ms[i] <= td) ? 1 : 0;
      return base * pow(p[0], static_cast<double>(count));
    }
    case kConstantLR:  // base * (t < total_iters ? factor : 1)
      return td < p[1] ? base * p[0] : base;
    case kLinearLR: {  // base * (s + (e - s) * min(t, T) / T)
      const double frac = fmin(td, p[2]) / p[2];
      return base * (p[0] + (p[1] - p[0]) * frac);
    }
    case kExponentialLR:  // base * gamma^t
      return base * pow(p[0], td);
    case kPolynomialLR: {  // base * (1 - min(t, T) / T)^power
      const double frac = 1.0 - fmin(td, p[0]) / p[0];
      return base * pow(frac, p[1]);
    }
    case kCosineAnnealingLR: {  // eta_min + (base - eta_min) * (1 + cos(pi t / T)) / 2
      const double c = cos(M_PI * td / p[0]);
      return p[1] + (base - p[1]) * (1.0 + c) / 2.0;
    }
    case kNoamDecay: {  // base * d^-0.5 * min(t^-0.5 (1 at t = 0), t * warmup^-1.5)
      const double a = (t == 0) ? 1.0 : 1.0 / sqrt(td);
      const double b = td * pow(p[1], -1.5);
      return base * pow(p[0], -0.5) * fmin(a, b);
    }
    case kTable: {  // base * table[min(t, n - 1)]
      const double* tab = prog + as_index(p[0]);
      const int64_t n = as_index(p[1]);
      const int64_t i = t < n ? (t < 0 ? 0 : t) : n - 1;
      return base * tab[i];
    }
    default:
      return eval_catalog_leaf(prog, node, t, base, momentum);
  }
}

// Evaluates the program rooted at `root` at time t for incoming lr `base`.
// root < 0 means "no schedule": the base lr as it stands.
FUSEDLR_HD inline LrMomentum eval_schedule(const double* prog, int64_t root, int64_t t,
                                           double base) {
  LrMomentum out{base, sched_nan()};
  if (root < 0) return out;
  struct Frame {
    int64_t node;
    int64_t next;
    int64_t t;
  };
  Frame stack[kMaxChainDepth];
  int sp = 0;
  int64_t node = root;
  double lr = base;
  while (true) {
    // Descend until a leaf produces a value.
    while (true) {
      const int kind = static_cast<int>(prog[node]);
      const double* p = prog + node + 1;
      if (kind == kSequential) {
        // children c_0..c_{n-1}, milestones m_1..m_{n-1}:
        // c_i runs on t - m_i while m_i <= t < m_{i+1} (m_0 = 0).
        const int64_t n = as_index(p[0]);
        const double* ms = prog + as_index(p[1]);
        const double* kids = ms + (n - 1);
        int64_t i = 0;
        while (i < n - 1 && ms[i] <= static_cast<double>(t)) ++i;
        if (i > 0) t -= as_index(ms[i - 1]);
        node = as_index(kids[i]);
      } else if (kind == kChained) {
        const int64_t n = as_index(p[0]);
        const double* kids = prog + as_index(p[1]);
        if (n > 1 && sp < kMaxChainDepth) stack[sp++] = Frame{node, 1, t};
        node = as_index(kids[0]);
      } else if (is_catalog_wrapper(kind)) {
        // Wrappers (e.g. LinearWarmup) either produce a value or tail-call a child.
        int64_t child = -1;
        const double v = eval_catalog_wrapper(prog, node, &t, lr, &child);
        if (child < 0) {
          lr = v;
          break;
        }
        node = child;
      } else {
        lr = eval_leaf(prog, node, t, lr, &out.momentum);
        break;
      }
    }
    // Resume the innermost chained node that still has children to apply.
    bool resumed = false;
    while (sp > 0) {
      Frame& f = stack[sp - 1];
      const int64_t n = as_index(prog[f.node + 1]);
      const double* kids = prog + as_index(prog[f.node + 2]);
      if (f.next < n) {
        node = as_index(kids[f.next]);
        t = f.t;
        ++f.next;
        if (f.next == n) --sp;
        resumed = true;
        break;
      }
      --sp;
    }
    if (!resumed) break;
  }
  out.lr = lr;
  return out;
}

// Per-group hyperparameter row layout (float64), shared by the Python packer
// (fusedlr/_device_state.py) and every kernel.
enum GroupField : int {
  kBaseLr = 0,
  kWeightDecay = 1,
  kMomentum = 2,   // SGD momentum, or Adam beta1
  kDampening = 3,  // SGD dampening, or Adam beta2
  kEps = 4,
  kNesterov = 5,
  kMaximize = 6,
  kAmsgrad = 7,
  kDecoupled = 8,  // AdamW: decoupled weight decay
  kStepsPerEpoch = 9,
  kScheduleRoot = 10,
  kGroupLrScale = 11,  // the group's own lr factor (timm's layer-decay `lr_scale`), default 1
  kGroupFields = 16,
};

// Effective (lr, momentum) of group g at schedule counter `counter`:
// t = counter // steps_per_epoch,
// lr = schedule(t, base_lr) * group_lr_scale * lr_scale[g] (lr_scale: the plateau factor).
// `out` receives 2 doubles: lr, and momentum (schedule's, or the group's own).
FUSEDLR_HD inline void eval_group(const double* prog, const double* hparams, const double* lr_scale,
                                  int64_t counter, int64_t g, double* out) {
  const double* row = hparams + g * kGroupFields;
  const int64_t spe = as_index(row[kStepsPerEpoch]);
  const int64_t t = floor_div(counter, spe < 1 ? 1 : spe);
  const LrMomentum r = eval_schedule(prog, as_index(row[kScheduleRoot]), t, row[kBaseLr]);
  out[0] = r.lr * row[kGroupLrScale] * lr_scale[g];
  out[1] = (r.momentum != r.momentum) ? row[kMomentum] : r.momentum;  // NaN: none
}

}  // namespace fusedlr
