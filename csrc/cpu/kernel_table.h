// Raw-pointer CPU update kernels, compiled once per vector ISA (isa_*.cpp) and
// picked at run time by the CPU's capability. No torch tensor headers here.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>

#include "update.h"

namespace fusedlr {

template <typename T>
using SgdSpanFn = void (*)(T* p, T* g, void* buf, int64_t n, const SgdScalars& s);
template <typename T>
using AdamSpanFn = void (*)(T* p, T* g, void* m, void* v, void* vmax, int64_t n,
                            const AdamScalars& s);

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
};

KernelTable kernel_table_default();
KernelTable kernel_table_avx2();
KernelTable kernel_table_avx512();

// The table for the best ISA this CPU supports (or FUSEDLR_CPU_ISA=default|avx2|avx512).
const KernelTable& cpu_kernels();

}  // namespace fusedlr
