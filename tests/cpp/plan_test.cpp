// Host-only test of the CUDA launch plan of csrc/include/multi_tensor.h (no torch, no CUDA):
//
//   g++ -std=c++17 -O1 -fsanitize=address,undefined -Icsrc/include tests/cpp/plan_test.cpp
//
// Over many thousands of random buckets (tensor counts, sizes past 2^31 elements, empty and
// 1-element tensors, misaligned starts of 2-, 4- and 8-byte elements, every launch limit) it
// checks, against a brute-force count of the (tensor, chunk) pairs each tensor must produce:
// every pair is emitted exactly once and in order, every launch respects its tensor and block
// limits, a tensor's metadata (pointers, numel, step, group, aligned flag) is copied unchanged
// into every launch it appears in, a tensor continuing into the next launch is its tensor 0, and
// the vector path's 16-byte precondition holds at the start of every chunk of an aligned tensor.
// It also checks that for_chunk visits every element of a chunk exactly once, for every layout,
// and that the step plan gives every step pointer exactly one slot; both kernel-argument layouts
// (the classic 4 KB one and the 32 KB one).
// Prints "ok: ..." and exits 0, or prints the first failure and exits 1 (the checks do not
// depend on NDEBUG).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <type_traits>
#include <vector>

#include "check.h"
#include "multi_tensor.h"

using namespace fusedlr;
using namespace fusedlr::mt;

static_assert(std::is_trivially_copyable<TensorListMeta<3>>::value, "kernel argument");
static_assert(std::is_trivially_copyable<TensorListMeta<5>>::value, "kernel argument");
static_assert(std::is_trivially_copyable<StepMeta>::value, "kernel argument");
static_assert(std::is_trivially_copyable<TensorListMeta<3, kLargeArgs>>::value, "kernel argument");
static_assert(std::is_trivially_copyable<TensorListMeta<5, kLargeArgs>>::value, "kernel argument");
static_assert(std::is_trivially_copyable<StepMetaT<kLargeArgs>>::value, "kernel argument");
static_assert(kChunkSize % kILP == 0, "chunk starts keep ILP groups whole");
static_assert((kChunkSize * 2) % kVectorAlign == 0, "chunk starts keep 16-bit tensors aligned");

namespace {

// A fake address: tensor i, pointer k, in its own 2^36-byte window (so the source tensor of a
// metadata slot can be read back from its pointer), optionally one element past 16 bytes.
uintptr_t fake_address(int i, int k, int misalign_bytes) {
  return (uintptr_t(i + 1) << 40) + (uintptr_t(k) << 36) + uintptr_t(misalign_bytes);
}

int64_t random_numel(std::mt19937_64& rng, bool huge) {
  const int r = static_cast<int>(rng() % 16);
  if (r == 0) return 0;
  if (r == 1) return 1;
  if (r < 7) return 1 + static_cast<int64_t>(rng() % 300);
  if (r < 10) {  // around chunk boundaries
    const int64_t c = 1 + static_cast<int64_t>(rng() % 4);
    return c * kChunkSize + static_cast<int64_t>(rng() % 3) - 1;
  }
  if (r < 14) return 1 + static_cast<int64_t>(rng() % (3 * kChunkSize));
  if (huge) return (int64_t{1} << 31) + static_cast<int64_t>(rng() % (3 * kChunkSize)) - 5;
  return 1 + static_cast<int64_t>(rng() % (40 * kChunkSize));
}

struct Stats {
  int64_t plans = 0;
  int64_t launches = 0;
  int64_t blocks = 0;
  int64_t huge_tensors = 0;
};

template <int D, int Layout = kClassicArgs>
void check_plan(std::mt19937_64& rng, int n, int max_t, int max_b, bool huge, int elem_size,
                Stats& stats) {
  using Meta = TensorListMeta<D, Layout>;
  std::vector<TensorEntry<D>> ts(n);
  std::vector<float> steps(n);
  std::vector<int64_t> chunks(n);
  std::vector<int64_t> first_pair(n + 1, 0);  // brute-force pair numbering
  for (int i = 0; i < n; ++i) {
    ts[i].numel = random_numel(rng, huge && rng() % 8 == 0);
    stats.huge_tensors += ts[i].numel > (int64_t{1} << 31) ? 1 : 0;
    for (int k = 0; k < D; ++k) {
      const bool absent = k >= 2 && rng() % 6 == 0;  // optional state (null is aligned)
      const int mis = rng() % 4 == 0 ? elem_size * static_cast<int>(1 + rng() % 3) : 0;
      ts[i].ptr[k] = absent ? nullptr : reinterpret_cast<void*>(fake_address(i, k, mis));
    }
    if (ts[i].ptr[0] == nullptr) ts[i].ptr[0] = reinterpret_cast<void*>(fake_address(i, 0, 0));
    ts[i].step = &steps[i];
    ts[i].group = static_cast<int32_t>(rng() % 5);
    chunks[i] = 0;
    for (int64_t e = 0; e < ts[i].numel; e += kChunkSize) ++chunks[i];  // brute force
    first_pair[i + 1] = first_pair[i] + chunks[i];
  }
  const int lim_t = (max_t < 1 || max_t > Meta::kMaxTensors) ? Meta::kMaxTensors : max_t;
  const int lim_b = (max_b < 1 || max_b > Meta::kMaxBlocks) ? Meta::kMaxBlocks : max_b;
  std::vector<uint8_t> seen(static_cast<size_t>(first_pair[n]), 0);
  int64_t last_pair = -1;  // emission order must follow (tensor, chunk) order
  int64_t open_src = -1;   // a tensor whose chunks were cut by the previous launch
  build_plan<D, Layout>(ts.data(), n, max_t, max_b, [&](const Meta& m, int blocks) {
    ++stats.launches;
    stats.blocks += blocks;
    CHECK(blocks >= 1 && blocks <= lim_b, "blocks %d limit %d", blocks, lim_b);
    int max_loc = -1;
    for (int b = 0; b < blocks; ++b) {
      const int t = m.block_to_tensor[b];
      CHECK(t < lim_t, "tensor slot %d, limit %d", t, lim_t);
      max_loc = t > max_loc ? t : max_loc;
      const uintptr_t a0 = reinterpret_cast<uintptr_t>(m.addresses[0][t]);
      const int src = static_cast<int>((a0 >> 40) - 1);
      CHECK(src >= 0 && src < n, "source %d of slot %d", src, t);
      if (b == 0 && open_src >= 0) CHECK(src == open_src && t == 0, "continuation slot %d", t);
      CHECK(m.numel[t] == ts[src].numel && m.step[t] == ts[src].step && m.group[t] == ts[src].group,
            "metadata of tensor %d", src);
      bool aligned = true;
      for (int k = 0; k < D; ++k) {
        CHECK(m.addresses[k][t] == ts[src].ptr[k], "pointer %d of tensor %d", k, src);
        aligned = aligned && reinterpret_cast<uintptr_t>(ts[src].ptr[k]) % kVectorAlign == 0;
      }
      CHECK(m.aligned[t] == (aligned ? 1 : 0), "aligned flag of tensor %d", src);
      const int64_t c = m.block_to_chunk[b];
      CHECK(c >= 0 && c < chunks[src], "chunk %lld of tensor %d (%lld chunks)", (long long)c, src,
            (long long)chunks[src]);
      const ChunkSpan s = chunk_span(m, b);
      CHECK(s.tensor == t && s.start == c * kChunkSize, "span of block %d", b);
      CHECK(s.n >= 1 && s.n <= kChunkSize && s.start + s.n <= ts[src].numel &&
                (s.start + s.n == ts[src].numel || s.n == kChunkSize),
            "span n=%d start=%lld numel=%lld", s.n, (long long)s.start, (long long)ts[src].numel);
      const int64_t pair = first_pair[src] + c;
      CHECK(pair > last_pair, "pair (%d, %lld) out of order", src, (long long)c);
      last_pair = pair;
      CHECK(++seen[pair] == 1, "pair (%d, %lld) emitted twice", src, (long long)c);
      if (m.aligned[t]) {  // the vector path's precondition at the chunk start
        for (int k = 0; k < D; ++k) {
          const uintptr_t at = reinterpret_cast<uintptr_t>(m.addresses[k][t]) +
                               uintptr_t(s.start) * uintptr_t(elem_size);
          CHECK(m.addresses[k][t] == nullptr || at % kVectorAlign == 0, "vector alignment");
        }
      }
    }
    const int last_t = m.block_to_tensor[blocks - 1];
    const int last_src =
        static_cast<int>((reinterpret_cast<uintptr_t>(m.addresses[0][last_t]) >> 40) - 1);
    open_src = m.block_to_chunk[blocks - 1] + 1 < chunks[last_src] ? last_src : -1;
    CHECK(max_loc + 1 <= lim_t, "%d tensors, limit %d", max_loc + 1, lim_t);
  });
  CHECK(open_src == -1, "the last launch cut tensor %lld", (long long)open_src);
  for (size_t p = 0; p < seen.size(); ++p)
    CHECK(seen[p] == 1, "pair %zu emitted %d times", p, seen[p]);
  ++stats.plans;
}

void check_for_chunk() {
  for (int n : {1, 2, 3, 4, 5, 7, 511, 512, 2047, 2048, 2049, 4097, 65535, 65536}) {
    for (int aligned = 0; aligned < 2; ++aligned) {
      for (int bd : {1, 32, 96, 512, 1024}) {
        std::vector<int> hit(n, 0);
        for (int th = 0; th < bd; ++th) {
          for_chunk(aligned != 0, n, th, bd, [&](int i, int count) {
            if (count == kILP) {
              CHECK(aligned && i % kILP == 0 && i + kILP <= n, "vector group at %d", i);
              for (int k = 0; k < kILP; ++k) hit[i + k]++;
            } else if (count == 1) {
              CHECK(i < n, "tail element %d", i);
              hit[i]++;
            } else {
              CHECK(!aligned && count == -1, "count %d", count);
              for (int k = 0; k < kILP; ++k) {
                if (i + k * bd < n) hit[i + k * bd]++;
              }
            }
          });
        }
        for (int i = 0; i < n; ++i) {
          CHECK(hit[i] == 1, "for_chunk n=%d aligned=%d bd=%d element %d hit %d", n, aligned, bd, i,
                hit[i]);
        }
      }
    }
  }
}

template <int Layout>
void check_step_plan(std::mt19937_64& rng) {
  using Meta = StepMetaT<Layout>;
  constexpr int kPer = Meta::kMaxSteps;
  for (int it = 0; it < 200; ++it) {
    const int n = static_cast<int>(rng() % (3 * kPer + 2));
    std::vector<float> steps(n);
    std::vector<float*> ptrs(n);
    std::vector<int32_t> groups(n);
    std::vector<uint8_t> has(n);
    for (int i = 0; i < n; ++i) {
      ptrs[i] = &steps[i];
      groups[i] = static_cast<int32_t>(rng() % 7);
      has[i] = static_cast<uint8_t>(rng() % 2);
    }
    std::vector<int> hit(n, 0);
    int launches = 0;
    build_step_plan<Layout>(ptrs.data(), groups.data(), has.data(), n, [&](const Meta& m) {
      ++launches;
      CHECK(m.count >= 1 && m.count <= kPer, "step launch of %d", m.count);
      for (int j = 0; j < m.count; ++j) {
        const int64_t i = m.step[j] - steps.data();
        CHECK(i >= 0 && i < n, "step pointer");
        CHECK(m.group[j] == groups[i] && m.has_state[j] == has[i], "step slot %d", j);
        hit[i]++;
      }
    });
    CHECK(launches == (n + kPer - 1) / kPer, "%d step launches for %d", launches, n);
    for (int i = 0; i < n; ++i) CHECK(hit[i] == 1, "step %d in %d slots", i, hit[i]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 1500;
  std::mt19937_64 rng(argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 20240611);
  Stats stats;
  for (int it = 0; it < rounds; ++it) {
    // Tensor counts around the per-launch capacities; limits 0 (capacity) .. past capacity.
    const int n = 1 + static_cast<int>(rng() % (it % 10 == 0 ? 400 : 100));
    const int max_t = static_cast<int>(rng() % 60);
    const int max_b = it % 3 == 0 ? 0 : static_cast<int>(rng() % 400);
    const bool huge = it % 25 == 0;
    const int elem = 2 << (rng() % 3);  // 2, 4 or 8 bytes
    check_plan<3>(rng, n, max_t, max_b, huge, elem, stats);
    check_plan<5>(rng, n, max_t, max_b, huge, elem, stats);
    if (it % 4 == 0) {  // the 32 KB layout: capacities 512 / 384 tensors, 1280 blocks
      const int big_n = 1 + static_cast<int>(rng() % (it % 40 == 0 ? 2000 : 700));
      const int big_t = it % 8 == 0 ? 0 : static_cast<int>(rng() % 600);
      const int big_b = it % 12 == 0 ? 0 : static_cast<int>(rng() % 1500);
      check_plan<3, kLargeArgs>(rng, big_n, big_t, big_b, huge, elem, stats);
      check_plan<5, kLargeArgs>(rng, big_n, big_t, big_b, huge, elem, stats);
    }
  }
  // A few more buckets with tensors past 2^31 elements: int32 chunk counts, int64 starts.
  for (int it = 0; it < 3; ++it) check_plan<5>(rng, 5, 0, 0, true, 2, stats);
  CHECK(stats.huge_tensors > 0, "no tensor past 2^31 elements was generated");
  check_for_chunk();
  check_step_plan<kClassicArgs>(rng);
  check_step_plan<kLargeArgs>(rng);
  std::printf("ok: %lld plans, %lld launches, %lld blocks, %lld tensors past 2^31 elements\n",
              (long long)stats.plans, (long long)stats.launches, (long long)stats.blocks,
              (long long)stats.huge_tensors);
  return 0;
}
