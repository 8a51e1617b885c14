// Raw-pointer CPU update kernels, compiled once per vector ISA (isa_*.cpp) and
// picked at run time by the CPU's capability. No torch tensor headers here.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "schedule_free.h"
#include "update.h"

namespace fusedlr {

template <typename T>
using SgdSpanFn = void (*)(T* p, T* g, void* buf, int64_t n, const SgdScalars& s);
// Schedule-free span: param y, grad, z and (AdamW) v, all of the param's type; grad and v
// are null for a train/eval switch, v for SGD.
template <typename T>
using ScheduleFreeSpanFn = void (*)(T* y, const T* g, T* z, T* v, int64_t n,
                                    const ScheduleFreeScalars& s);
template <typename T>
using AdamSpanFn = void (*)(T* p, T* g, void* m, void* v, void* vmax, int64_t n,
                            const AdamScalars& s);

// master_weights in one pass (update_kernels.h): float32 master and state, grad and the
// rounded copy `low` of the 16-bit param type T.
template <typename T>
using SgdMasterSpanFn = void (*)(float* master, const T* g, T* low, void* buf, int64_t n,
                                 const SgdScalars& s);
template <typename T>
using AdamMasterSpanFn = void (*)(float* master, const T* g, T* low, void* m, void* v, void* vmax,
                                  int64_t n, const AdamScalars& s);

// State buffers (buf, m, v, vmax) are float for float/half/bfloat16 params and
// double for double params; vmax and buf may be null when unused.
struct KernelTable {
  const char* isa;
  SgdSpanFn<float> sgd_f32;
  SgdSpanFn<double> sgd_f64;
  SgdSpanFn<c10::BFloat16> sgd_bf16;
  SgdSpanFn<c10::Half> sgd_f16;
  AdamSpanFn<float> adam_f32;
  AdamSpanFn<double> adam_f64;
  AdamSpanFn<c10::BFloat16> adam_bf16;
  AdamSpanFn<c10::Half> adam_f16;
  ScheduleFreeSpanFn<float> schedule_free_f32;
  ScheduleFreeSpanFn<double> schedule_free_f64;
  ScheduleFreeSpanFn<c10::BFloat16> schedule_free_bf16;
  ScheduleFreeSpanFn<c10::Half> schedule_free_f16;
  SgdMasterSpanFn<c10::BFloat16> sgd_master_bf16;
  SgdMasterSpanFn<c10::Half> sgd_master_f16;
  AdamMasterSpanFn<c10::BFloat16> adam_master_bf16;
  AdamMasterSpanFn<c10::Half> adam_master_f16;
};

KernelTable kernel_table_default();
KernelTable kernel_table_avx2();
KernelTable kernel_table_avx512();

// The table for the best ISA this CPU supports (or FUSEDLR_CPU_ISA=default|avx2|avx512).
const KernelTable& cpu_kernels();

// Software prefetch distance of the update spans, in elements ahead of the loop in every stream
// (0: none). Starts at FUSEDLR_CPU_PREFETCH when set, else kDefaultPrefetch; see
// update_kernels.h for why and benchmarks/RESULTS_stream.md for the measurements.
// The largest distance is half a work item (update_cpu.cpp, schedule_free_cpu.cpp: 16384
// elements), since a span no longer than the distance prefetches nothing.
constexpr int64_t kDefaultPrefetch = 512;
constexpr int64_t kMaxPrefetch = 8192;
int64_t cpu_prefetch_distance();
void set_cpu_prefetch_distance(int64_t elements);  // caller checks 0 <= elements <= kMaxPrefetch

}  // namespace fusedlr
