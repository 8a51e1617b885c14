// The lines csrc/cpu/prefetch.h asks for, recorded by a test Sink, against the lines a span
// streams: for every element size, vector step, span length, distance and base misalignment,
// each line from `dist` elements past the span's start to `dist` elements past its last
// vector is requested exactly once and in order, and nothing when the distance is 0 or the
// span is no longer than the distance.
#include "cpu/prefetch.h"

#include <cstdint>
#include <cstdio>
#include <vector>

#include "check.h"

namespace {

std::vector<uintptr_t> g_lines;

struct Recorder {
  static void line(uintptr_t address) { g_lines.push_back(address); }
};

template <typename E>
int64_t check_span(const E* base, int64_t n, int64_t step, int64_t dist) {
  g_lines.clear();
  const fusedlr::PrefetchAhead<Recorder> pf(dist, n);
  int64_t i = 0;
  for (; i + step <= n; i += step) pf.ahead(base, i, step);  // the spans' vector loop
  const int64_t vec = i;                                     // elements the vector loop covered
  const int64_t size = static_cast<int64_t>(sizeof(E));
  if (dist == 0 || n <= dist) {
    CHECK(g_lines.empty(), "n %lld dist %lld: %zu requests, want none", (long long)n,
          (long long)dist, g_lines.size());
    return 0;
  }
  const int64_t want = (vec * size + fusedlr::kLineBytes - 1) / fusedlr::kLineBytes;
  CHECK(static_cast<int64_t>(g_lines.size()) == want,
        "size %lld step %lld n %lld dist %lld: %zu requests, want %lld", (long long)size,
        (long long)step, (long long)n, (long long)dist, g_lines.size(), (long long)want);
  const uintptr_t first = reinterpret_cast<uintptr_t>(base) + static_cast<uintptr_t>(dist * size);
  for (size_t k = 0; k < g_lines.size(); ++k) {
    CHECK(g_lines[k] == first + k * fusedlr::kLineBytes, "request %zu at +%lld, want +%lld", k,
          (long long)(g_lines[k] - first), (long long)(k * fusedlr::kLineBytes));
  }
  return want;
}

template <typename E>
int64_t sweep(const char* storage) {
  int64_t lines = 0;
  for (int64_t step : {1, 2, 4, 8, 16, 32, 64}) {
    for (int64_t offset = 0; offset < 4; ++offset) {  // misaligned bases
      const E* base = reinterpret_cast<const E*>(storage) + offset;
      for (int64_t n : {0, 1, 7, 63, 64, 511, 512, 513, 4097, 16384}) {
        for (int64_t dist : {0, 1, 7, 16, 512, 8192}) lines += check_span(base, n, step, dist);
      }
    }
  }
  return lines;
}

}  // namespace

int main() {
  // Only addresses are formed, never read: a small buffer stands for every span.
  static char storage[256];
  int64_t lines = sweep<uint16_t>(storage) + sweep<float>(storage) + sweep<double>(storage);
  CHECK(lines > 10000, "only %lld lines checked", (long long)lines);
  std::printf("ok: %lld prefetched lines checked\n", (long long)lines);
  return 0;
}
