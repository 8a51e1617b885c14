// at::vec implementations of the update spans. Included by isa_*.cpp, each of
// which sets the target ISA and the namespace FUSEDLR_ISA_NS first.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include "kernel_table.h"
#include "prefetch.h"

namespace fusedlr {
namespace FUSEDLR_ISA_NS {

using at::vec::Vectorized;

template <typename V>
struct VecOps {
  static inline V sqrt(V x) { return x.sqrt(); }
  static inline V max(V a, V b) { return at::vec::maximum(a, b); }
};

// Software prefetch. The spans stream 3-6 arrays, and Adam's loop holds a sqrt and two divisions
// per element, so the out-of-order window fills with arithmetic before the loads of later lines
// are issued, and the hardware prefetcher alone keeps too few lines in flight: streaming, the
// AVX2 kernels took up to 1.17x the time of torch's fused step (SGD) and 1.04x that of
// DeepSpeed's CPU Adam on a Sapphire Rapids-class VM, and 1.08-1.34x torch fused's on an AVX2
// Zen 3 machine (issue 15). Each vector loop therefore asks for the line `dist` elements ahead
// of it in every stream, once per 64-byte line (prefetcht0). benchmarks/RESULTS.md (fourth
// session) has the measurements: 8-13% faster streaming steps on AVX2 and AVX-512 at 256-768
// elements; unrolling, work-item size, store order and non-temporal stores were measured too
// and are not used. Spans no longer than `dist` prefetch nothing (prefetch.h).
using Prefetch = PrefetchAhead<>;

template <typename T>
constexpr bool is_reduced() {
  return std::is_same_v<T, c10::BFloat16> || std::is_same_v<T, c10::Half>;
}

// Loads n (= Vectorized<T>::size()) elements of T as opmath vectors (two for reduced types).
template <typename T>
struct Lanes {
  using O = at::opmath_type<T>;  // float, or double for double
  using OVec = Vectorized<O>;
  static constexpr int kParts = is_reduced<T>() ? 2 : 1;
  static constexpr int64_t kStep = Vectorized<T>::size();
  static inline void load(const T* src, OVec* out) {
    if constexpr (is_reduced<T>()) {
      auto parts = at::vec::convert_to_float<T>(Vectorized<T>::loadu(src));
      out[0] = std::get<0>(parts);
      out[1] = std::get<1>(parts);
    } else {
      out[0] = OVec::loadu(src);
    }
  }
  static inline void store(T* dst, const OVec* in) {
    if constexpr (is_reduced<T>()) {
      at::vec::convert_from_float<T>(in[0], in[1]).store(dst);
    } else {
      in[0].store(dst);
    }
  }
  static inline void load_state(const O* src, OVec* out) {
    for (int k = 0; k < kParts; ++k) out[k] = OVec::loadu(src + k * OVec::size());
  }
  static inline void store_state(O* dst, const OVec* in) {
    for (int k = 0; k < kParts; ++k) in[k].store(dst + k * OVec::size());
  }
};

// Where a span reads and writes the param. Regular (kMaster false): the param of type T, read
// and written in place. master_weights in one pass (kMaster true): the float32 master is the
// param the update reads and writes, and the master rounded to T (to nearest even, as the copy
// of the three-pass path) is also written to the 16-bit param `low`.
template <typename T, bool kMaster>
struct ParamIO {
  using L = Lanes<T>;
  using O = typename L::O;
  using OVec = typename L::OVec;
  using P = std::conditional_t<kMaster, float, T>;

  static inline void load(const P* p, OVec* out) {
    if constexpr (kMaster) {
      L::load_state(p, out);
    } else {
      L::load(p, out);
    }
  }
  // Elements [i, i + kStep) of the param (and of `low`, null unless kMaster).
  static inline void store(P* p, T* low, int64_t i, const OVec* in) {
    if constexpr (kMaster) {
      L::store_state(p + i, in);
      L::store(low + i, in);
    } else {
      (void)low;
      L::store(p + i, in);
    }
  }
  static inline void store1(P* p, T* low, int64_t i, O v) {
    p[i] = static_cast<P>(v);
    if constexpr (kMaster) {
      low[i] = static_cast<T>(v);
    } else {
      (void)low;
    }
  }
};

// The SGD span: param `p` (see ParamIO), grad `g`, written back divided to `g_out` when the
// scalars say so (the regular spans: g_out == g; the master spans: null, grads left as they are),
// momentum buffer `buf_v` (O) or null.
template <typename T, bool kMaster>
void sgd_update_span(typename ParamIO<T, kMaster>::P* p, const T* g, T* g_out, T* low, void* buf_v,
                     int64_t n, const SgdScalars& s) {
  using IO = ParamIO<T, kMaster>;
  using L = typename IO::L;
  using O = typename IO::O;
  using OVec = typename IO::OVec;
  O* buf = static_cast<O*>(buf_v);
  const SgdCoeffs<OVec> cv = SgdCoeffs<OVec>::template make<O>(s);
  const SgdCoeffs<O> cs = SgdCoeffs<O>::template make<O>(s);
  const bool store_grad = g_out != nullptr && cs.store_grad();
  const Prefetch pf(cpu_prefetch_distance(), n);
  const O* buf_in = cv.first() ? nullptr : buf;
  int64_t i = 0;
  for (; i + L::kStep <= n; i += L::kStep) {
    pf.ahead(p, i, L::kStep);
    pf.ahead(g, i, L::kStep);
    pf.ahead(low, i, L::kStep);
    pf.ahead(buf_in, i, L::kStep);
    OVec pv[L::kParts], gv[L::kParts], bv[L::kParts];
    IO::load(p + i, pv);
    L::load(g + i, gv);
    if (buf && !cv.first()) L::load_state(buf + i, bv);
    for (int k = 0; k < L::kParts; ++k) sgd_element(pv[k], gv[k], bv[k], cv);
    IO::store(p, low, i, pv);
    if (store_grad) L::store(g_out + i, gv);
    if (buf) L::store_state(buf + i, bv);
  }
  for (; i < n; ++i) {
    O pv = static_cast<O>(p[i]), gv = static_cast<O>(g[i]);
    O bv = (buf && !cs.first()) ? buf[i] : O(0);
    sgd_element(pv, gv, bv, cs);
    IO::store1(p, low, i, pv);
    if (store_grad) g_out[i] = static_cast<T>(gv);
    if (buf) buf[i] = bv;
  }
}

// The Adam / AdamW span: as sgd_update_span, with the state m, v and (amsgrad) vmax, or null.
template <typename T, bool kMaster>
void adam_update_span(typename ParamIO<T, kMaster>::P* p, const T* g, T* g_out, T* low, void* m_v,
                      void* v_v, void* vmax_v, int64_t n, const AdamScalars& s) {
  using IO = ParamIO<T, kMaster>;
  using L = typename IO::L;
  using O = typename IO::O;
  using OVec = typename IO::OVec;
  O* m = static_cast<O*>(m_v);
  O* v = static_cast<O*>(v_v);
  O* vmax = static_cast<O*>(vmax_v);
  const AdamCoeffs<OVec> cv = AdamCoeffs<OVec>::template make<O>(s);
  const AdamCoeffs<O> cs = AdamCoeffs<O>::template make<O>(s);
  const bool store_grad = g_out != nullptr && cs.store_grad();
  const Prefetch pf(cpu_prefetch_distance(), n);
  int64_t i = 0;
  for (; i + L::kStep <= n; i += L::kStep) {
    pf.ahead(p, i, L::kStep);
    pf.ahead(g, i, L::kStep);
    pf.ahead(low, i, L::kStep);
    pf.ahead(m, i, L::kStep);
    pf.ahead(v, i, L::kStep);
    pf.ahead(vmax, i, L::kStep);
    OVec pv[L::kParts], gv[L::kParts], mv[L::kParts], vv[L::kParts], xv[L::kParts];
    IO::load(p + i, pv);
    L::load(g + i, gv);
    L::load_state(m + i, mv);
    L::load_state(v + i, vv);
    if (vmax) L::load_state(vmax + i, xv);
    for (int k = 0; k < L::kParts; ++k) {
      adam_element<OVec, VecOps<OVec>>(pv[k], gv[k], mv[k], vv[k], xv[k], cv);
    }
    IO::store(p, low, i, pv);
    if (store_grad) L::store(g_out + i, gv);
    L::store_state(m + i, mv);
    L::store_state(v + i, vv);
    if (vmax) L::store_state(vmax + i, xv);
  }
  for (; i < n; ++i) {
    O pv = static_cast<O>(p[i]), gv = static_cast<O>(g[i]);
    O xv = vmax ? vmax[i] : O(0);
    adam_element<O, ScalarOps<O>>(pv, gv, m[i], v[i], xv, cs);
    IO::store1(p, low, i, pv);
    if (store_grad) g_out[i] = static_cast<T>(gv);
    if (vmax) vmax[i] = xv;
  }
}

// The kernel table's entries (kernel_table.h signatures).
template <typename T>
void sgd_span(T* p, T* g, void* buf, int64_t n, const SgdScalars& s) {
  sgd_update_span<T, false>(p, g, g, nullptr, buf, n, s);
}

template <typename T>
void adam_span(T* p, T* g, void* m, void* v, void* vmax, int64_t n, const AdamScalars& s) {
  adam_update_span<T, false>(p, g, g, nullptr, m, v, vmax, n, s);
}

// master_weights in one pass: grads are not written back.
template <typename T>
void sgd_master_span(float* master, const T* g, T* low, void* buf, int64_t n, const SgdScalars& s) {
  sgd_update_span<T, true>(master, g, nullptr, low, buf, n, s);
}

template <typename T>
void adam_master_span(float* master, const T* g, T* low, void* m, void* v, void* vmax, int64_t n,
                      const AdamScalars& s) {
  adam_update_span<T, true>(master, g, nullptr, low, m, v, vmax, n, s);
}

// Schedule-free update or train/eval switch (schedule_free.h) of n elements; the state z and
// v have the param's type (as the schedulefree package keeps them).
template <typename T>
void schedule_free_span(T* y, const T* g, T* z, T* v, int64_t n, const ScheduleFreeScalars& s) {
  using L = Lanes<T>;
  using O = typename L::O;
  using OVec = typename L::OVec;
  const ScheduleFreeCoeffs<OVec> cv = ScheduleFreeCoeffs<OVec>::template make<O>(s);
  const ScheduleFreeCoeffs<O> cs = ScheduleFreeCoeffs<O>::template make<O>(s);
  const bool update = s.mode == kSfUpdate;
  const bool adam = update && s.adam;
  const Prefetch pf(cpu_prefetch_distance(), n);
  int64_t i = 0;
  for (; i + L::kStep <= n; i += L::kStep) {
    pf.ahead(y, i, L::kStep);
    pf.ahead(z, i, L::kStep);
    if (update) pf.ahead(g, i, L::kStep);
    if (adam) pf.ahead(v, i, L::kStep);
    OVec yv[L::kParts], gv[L::kParts], zv[L::kParts], vv[L::kParts];
    L::load(y + i, yv);
    L::load(z + i, zv);
    for (int k = 0; k < L::kParts; ++k) gv[k] = vv[k] = OVec(O(0));
    if (update) L::load(g + i, gv);
    if (adam) L::load(v + i, vv);
    for (int k = 0; k < L::kParts; ++k) {
      schedule_free_element<OVec, VecOps<OVec>>(yv[k], gv[k], zv[k], vv[k], cv);
    }
    L::store(y + i, yv);
    if (update) L::store(z + i, zv);
    if (adam) L::store(v + i, vv);
  }
  for (; i < n; ++i) {
    O yv = static_cast<O>(y[i]), zv = static_cast<O>(z[i]);
    O gv = update ? static_cast<O>(g[i]) : O(0);
    O vv = adam ? static_cast<O>(v[i]) : O(0);
    schedule_free_element<O, ScalarOps<O>>(yv, gv, zv, vv, cs);
    y[i] = static_cast<T>(yv);
    if (update) z[i] = static_cast<T>(zv);
    if (adam) v[i] = static_cast<T>(vv);
  }
}

inline KernelTable make_table(const char* isa) {
  return KernelTable{isa,
                     &sgd_span<float>,
                     &sgd_span<double>,
                     &sgd_span<c10::BFloat16>,
                     &sgd_span<c10::Half>,
                     &adam_span<float>,
                     &adam_span<double>,
                     &adam_span<c10::BFloat16>,
                     &adam_span<c10::Half>,
                     &schedule_free_span<float>,
                     &schedule_free_span<double>,
                     &schedule_free_span<c10::BFloat16>,
                     &schedule_free_span<c10::Half>,
                     &sgd_master_span<c10::BFloat16>,
                     &sgd_master_span<c10::Half>,
                     &adam_master_span<c10::BFloat16>,
                     &adam_master_span<c10::Half>};
}

}  // namespace FUSEDLR_ISA_NS
}  // namespace fusedlr
