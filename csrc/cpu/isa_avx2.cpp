// CPU update kernels for the AVX2 vector ISA (see update_kernels.h).
#pragma GCC target("avx2,fma,f16c")
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
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define FUSEDLR_ISA_NS isa_avx2

#include "update_kernels.h"

namespace fusedlr {
KernelTable kernel_table_avx2() { return isa_avx2::make_table("avx2"); }
}  // namespace fusedlr
