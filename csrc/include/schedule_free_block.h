// Multi-tensor block body of the schedule-free CUDA kernel (schedule_free.h math
// over multi_tensor.h's launch plan). Plain __host__ __device__ C++: the
// __global__ wrapper (csrc/cuda/schedule_free_kernels.cu) and the CPU emulator
// (csrc/cpu/emulate_cuda.cpp) run this same function.
//
// Pointer depth 4: y (param), grad, z, v (AdamW's exp_avg_sq), all of the param
// type; grad and v are null when unused (train/eval switches; SGD).
#pragma once

#include <cstdint>

#include "hd.h"
#include "multi_tensor.h"
#include "schedule_free.h"

namespace fusedlr {
namespace mt {
FUSEDLR_MT_BEGIN

// (DepthTraits<4>, 40 tensors a launch, is in multi_tensor.h: master SGD shares the depth.)

// Arguments shared by every launch of one call (device pointers).
struct ScheduleFreeArgs {
  const double* hparams;  // [groups, kGroupFields]
  const double* state;    // [groups, kSfStateFields]; null for train/eval switches
  int32_t mode;           // ScheduleFreeMode
  int32_t adam;           // exp_avg_sqs present
};

static_assert(sizeof(TensorListMeta<4>) + sizeof(ScheduleFreeArgs) <= 4000,
              "kernel argument > 4 KB");

// One (tensor, chunk) block of the schedule-free update or switch. T is the param type.
template <typename T>
FUSEDLR_INLINE void schedule_free_block(const TensorListMeta<4>& meta, const ScheduleFreeArgs& args,
                                        int block, int thread, int block_dim) {
  using O = typename ElemTraits<T>::Opmath;
  const ChunkSpan span = chunk_span(meta, block);
  const int t = span.tensor;
  const int64_t g = meta.group[t];
  const double zero_state[kSfStateFields] = {};
  const double* st = args.state != nullptr ? args.state + g * kSfStateFields : zero_state;
  const ScheduleFreeScalars s =
      make_schedule_free_scalars(args.hparams + g * kGroupFields, st, args.adam != 0, args.mode);
  const ScheduleFreeCoeffs<O> c = ScheduleFreeCoeffs<O>::template make<O>(s);
  const bool update = args.mode == kSfUpdate;
  const bool adam = update && args.adam != 0;
  T* y = static_cast<T*>(meta.addresses[0][t]) + span.start;
  T* gr = update ? static_cast<T*>(meta.addresses[1][t]) + span.start : nullptr;
  T* z = static_cast<T*>(meta.addresses[2][t]) + span.start;
  T* v = adam ? static_cast<T*>(meta.addresses[3][t]) + span.start : nullptr;
  const int n = span.n;
  for_chunk(meta.aligned[t] != 0, n, thread, block_dim, [&](int i, int count) {
    O yv[kILP] = {}, gv[kILP] = {}, zv[kILP] = {}, vv[kILP] = {};
    if (count == kILP) {
      T yr[kILP], gq[kILP] = {}, zr[kILP], vr[kILP] = {};
      load_vec(y + i, yr);
      load_vec(z + i, zr);
      if (update) load_vec(gr + i, gq);
      if (adam) load_vec(v + i, vr);
#pragma unroll
      for (int k = 0; k < kILP; ++k) {
        yv[k] = ElemTraits<T>::load(yr[k]);
        zv[k] = ElemTraits<T>::load(zr[k]);
        if (update) gv[k] = ElemTraits<T>::load(gq[k]);
        if (adam) vv[k] = ElemTraits<T>::load(vr[k]);
        schedule_free_element<O, ScalarOps<O>>(yv[k], gv[k], zv[k], vv[k], c);
        yr[k] = ElemTraits<T>::store(yv[k]);
        zr[k] = ElemTraits<T>::store(zv[k]);
        vr[k] = ElemTraits<T>::store(vv[k]);
      }
      store_vec(y + i, yr);
      if (update) store_vec(z + i, zr);
      if (adam) store_vec(v + i, vr);
      return;
    }
    const int stride = count == 1 ? 0 : block_dim;
    const int lim = count == 1 ? 1 : kILP;
#pragma unroll
    for (int k = 0; k < kILP; ++k) {
      const int j = i + k * stride;
      if (k < lim && j < n) {
        yv[k] = load_elem(y, j);
        zv[k] = load_elem(z, j);
        if (update) gv[k] = load_elem(gr, j);
        if (adam) vv[k] = load_elem(v, j);
      }
    }
#pragma unroll
    for (int k = 0; k < kILP; ++k) {
      const int j = i + k * stride;
      if (k < lim && j < n) {
        schedule_free_element<O, ScalarOps<O>>(yv[k], gv[k], zv[k], vv[k], c);
        y[j] = ElemTraits<T>::store(yv[k]);
        if (update) z[j] = ElemTraits<T>::store(zv[k]);
        if (adam) v[j] = ElemTraits<T>::store(vv[k]);
      }
    }
  });
}

// Scalar pass of a step: thread (block, thread) advances group block * block_dim + thread.
FUSEDLR_INLINE void schedule_free_prepare_block(const double* prog, const double* hparams,
                                                int64_t groups, double* state, int block,
                                                int thread, int block_dim) {
  const int64_t g = static_cast<int64_t>(block) * block_dim + thread;
  if (g >= groups) return;
  schedule_free_prepare_group(prog, hparams, g, state);
}

FUSEDLR_MT_END
}  // namespace mt
}  // namespace fusedlr
