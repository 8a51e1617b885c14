// CPU update kernels for the AVX512 vector ISA (see update_kernels.h).
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
// The target pragma enables the instructions but not the feature macros that
// headers such as sleef.h test, so define those too.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#ifndef __F16C__
#define __F16C__ 1
#endif
#ifndef __AVX512F__
#define __AVX512F__ 1
#endif
#ifndef __AVX512BW__
#define __AVX512BW__ 1
#endif
#ifndef __AVX512VL__
#define __AVX512VL__ 1
#endif
#ifndef __AVX512DQ__
#define __AVX512DQ__ 1
#endif
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define FUSEDLR_ISA_NS isa_avx512

#include "update_kernels.h"

namespace fusedlr {
KernelTable kernel_table_avx512() { return isa_avx512::make_table("avx512"); }
}  // namespace fusedlr
