// Picks the CPU update kernels for the best vector ISA this CPU supports.
#include "kernel_table.h"

#include <cstdlib>
#include <cstring>

namespace fusedlr {

namespace {
KernelTable choose() {
  const char* forced = std::getenv("FUSEDLR_CPU_ISA");
  const bool any = forced == nullptr || forced[0] == '\0';
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (avx512 && (any || std::strcmp(forced, "avx512") == 0)) return kernel_table_avx512();
  if (avx2 && (any || std::strcmp(forced, "avx2") == 0 || std::strcmp(forced, "avx512") == 0)) {
    return kernel_table_avx2();
  }
#endif
  (void)any;
  return kernel_table_default();
}
}  // namespace

const KernelTable& cpu_kernels() {
  static const KernelTable table = choose();
  return table;
}

}  // namespace fusedlr
