// Picks the CPU update kernels for the best vector ISA this CPU supports.
#include "kernel_table.h"

#include <atomic>
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

int64_t initial_prefetch() {
  const char* v = std::getenv("FUSEDLR_CPU_PREFETCH");
  if (v == nullptr || v[0] == '\0') return kDefaultPrefetch;
  // 1-8 decimal digits, as fusedlr/cpu_tuning.py checks at import (which refuses anything
  // else before the first step reads this); a malformed value keeps the default here.
  int64_t n = 0;
  int digits = 0;
  for (const char* c = v; *c != '\0'; ++c, ++digits) {
    if (*c < '0' || *c > '9' || digits == 8) return kDefaultPrefetch;
    n = n * 10 + (*c - '0');
  }
  return n <= kMaxPrefetch ? n : kDefaultPrefetch;
}

std::atomic<int64_t>& prefetch_slot() {
  static std::atomic<int64_t> slot{initial_prefetch()};
  return slot;
}
}  // namespace

int64_t cpu_prefetch_distance() { return prefetch_slot().load(std::memory_order_relaxed); }

void set_cpu_prefetch_distance(int64_t elements) {
  prefetch_slot().store(elements, std::memory_order_relaxed);
}

const KernelTable& cpu_kernels() {
  static const KernelTable table = choose();
  return table;
}

}  // namespace fusedlr
