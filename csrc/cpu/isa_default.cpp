// CPU update kernels for the DEFAULT vector ISA (see update_kernels.h).

#define CPU_CAPABILITY DEFAULT

#define FUSEDLR_ISA_NS isa_default

#include "update_kernels.h"

namespace fusedlr {
KernelTable kernel_table_default() { return isa_default::make_table("default"); }
}  // namespace fusedlr
