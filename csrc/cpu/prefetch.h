// Software prefetch of the CPU update spans (update_kernels.h): why, and the measurements, are
// there and in benchmarks/RESULTS.md (fourth session). No torch headers: tests/cpp/prefetch_test
// checks the lines it asks for with a recording Sink.
#pragma once

#include <cstdint>

namespace fusedlr {

constexpr int64_t kLineBytes = 64;

// Sinks: where a prefetch request goes. Every function here is always inlined, so the ISA
// translation units that include this header emit no shared out-of-line copy.
struct HardwarePrefetch {
  static inline __attribute__((always_inline)) void line(uintptr_t address) {
    __builtin_prefetch(reinterpret_cast<const void*>(address), 0, 3);  // prefetcht0
  }
};

// One span's prefetch: `dist` elements ahead of the loop in every stream, once per 64-byte
// line. A span no longer than the distance prefetches nothing (its lines are another span's).
template <typename Sink = HardwarePrefetch>
struct PrefetchAhead {
  int64_t dist;  // elements ahead; 0: off

  inline __attribute__((always_inline)) PrefetchAhead(int64_t distance, int64_t n)
      : dist(n > distance ? distance : 0) {}

  // The lines `dist` elements past element i of `base` (null: no stream), for a loop that
  // advances `step` elements an iteration from i = 0. The address is formed as an integer: it
  // may lie past the array, which a prefetch never faults on.
  template <typename E>
  inline __attribute__((always_inline)) void ahead(const E* base, int64_t i, int64_t step) const {
    if (dist == 0 || base == nullptr) return;
    constexpr int64_t kSize = static_cast<int64_t>(sizeof(E));
    const int64_t bytes = step * kSize;
    const uintptr_t at =
        reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>((i + dist) * kSize);
    if (bytes >= kLineBytes) {
      for (int64_t o = 0; o < bytes; o += kLineBytes) Sink::line(at + static_cast<uintptr_t>(o));
    } else if ((i * kSize) % kLineBytes == 0) {
      Sink::line(at);
    }
  }
};

}  // namespace fusedlr
