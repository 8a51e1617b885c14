// The schedule catalog beyond the core kinds of schedule.h: cyclic, one-cycle,
// warm restarts, TensorFlow/Keras/Paddle decays, warmup-stable-decay, ...
// Included by schedule.h after the core declarations; nothing here is used alone.
#pragma once

namespace fusedlr {

// Kinds whose evaluation may tail-call a child (e.g. LinearWarmup).
FUSEDLR_INLINE bool is_catalog_wrapper(int kind) {
  (void)kind;
  return false;
}

// A wrapper either returns a value (*child left < 0) or sets *child and
// shifts *t for the child.
FUSEDLR_HD inline double eval_catalog_wrapper(const double* prog, int64_t node, int64_t* t,
                                              double base, int64_t* child) {
  (void)prog;
  (void)node;
  (void)t;
  *child = -1;
  return base;
}

// Leaf kinds of the catalog. Unknown kinds evaluate to NaN.
FUSEDLR_HD inline double eval_catalog_leaf(const double* prog, int64_t node, int64_t t,
                                           double base, double* momentum) {
  (void)prog;
  (void)node;
  (void)t;
  (void)base;
  (void)momentum;
  return sched_nan();
}

}  // namespace fusedlr
