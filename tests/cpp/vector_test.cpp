// Host test of the device-only code of the CUDA block bodies (no torch, no GPU):
//
//   g++ -std=c++17 -O1 -fsanitize=address,undefined,alignment -DFUSEDLR_HOST_VECTOR_PATH \
//       -Icsrc/include -Icsrc -I$CUDA_HOME/include tests/cpp/vector_test.cpp
//
// FUSEDLR_HOST_VECTOR_PATH makes load_vec / store_vec take their vector branch (the one
// __CUDA_ARCH__ selects on the device: one 8- or 16-byte access per group, two for double), and
// the CUDA toolkit's cuda_fp16.h / cuda_bf16.h give the real __half / __nv_bfloat16 types and
// conversions on the host. Checked:
// - load_vec / store_vec against element-by-element copies, bit for bit, at every 16-byte offset
//   of a buffer, and that a store writes its kILP elements and nothing else;
// - ElemTraits<__half> / <__nv_bfloat16> (elem_traits_cuda.h) against a decoder written here from
//   the IEEE formats: load exact for all 65536 bit patterns, store round-to-nearest-even
//   (ties included, overflow to infinity for half) on every midpoint and random floats;
// - sgd_block / adam_block for float, double, __half and __nv_bfloat16 on aligned tensors (vector
//   path) against the same blocks with the aligned flag cleared (the strided scalar path), bit
//   for bit, over odd sizes and several chunks, every optional state and grad scaling.
// `vector_test misaligned` instead makes one vector load from an address 4 bytes past 16: UBSan's
// alignment check must stop it (tests/test_host_cpp.py checks that it does).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "cuda/elem_traits_cuda.h"
#include "multi_tensor.h"

#if !defined(FUSEDLR_VECTOR_PATH)
#error "build with -DFUSEDLR_HOST_VECTOR_PATH: this test is about the vector branch"
#endif

using namespace fusedlr;
using namespace fusedlr::mt;

namespace {

template <typename T>
bool same_bits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename T>
T from_bits(uint64_t bits) {
  T t;
  std::memcpy(&t, &bits, sizeof(T));  // little endian: the low sizeof(T) bytes
  return t;
}

template <typename T>
uint16_t bits16(T x) {
  uint16_t b;
  std::memcpy(&b, &x, 2);
  return b;
}

// A 64-byte aligned buffer of n elements.
template <typename T>
struct Buf {
  T* p;
  int64_t n;
  explicit Buf(int64_t count) : n(count) {
    const size_t bytes = ((static_cast<size_t>(count) * sizeof(T) + 63) / 64) * 64 + 64;
    p = static_cast<T*>(std::aligned_alloc(64, bytes));
  }
  Buf(const Buf& o) : Buf(o.n) { std::memcpy(p, o.p, static_cast<size_t>(n) * sizeof(T)); }
  Buf& operator=(const Buf&) = delete;
  ~Buf() { std::free(p); }
};

// ---------------------------------------------------------------------------------------------
// load_vec / store_vec against element copies.

template <typename T>
void check_load_store(const char* name) {
  constexpr int kN = 64;
  Buf<T> src(kN), dst(kN);
  for (int i = 0; i < kN; ++i) src.p[i] = from_bits<T>(0x0123456789abcdefULL * (i + 1));
  // The vector access's alignment: 8 bytes for 16-bit types, 16 for float and double.
  const size_t align = sizeof(T) * kILP < kVectorAlign ? sizeof(T) * kILP : kVectorAlign;
  for (int o = 0; o + kILP <= kN; ++o) {
    if (o * sizeof(T) % align != 0) continue;
    T got[kILP];
    load_vec(src.p + o, got);
    for (int k = 0; k < kILP; ++k) {
      CHECK(same_bits(got[k], src.p[o + k]), "%s load_vec at %d, element %d", name, o, k);
    }
    const T sentinel = from_bits<T>(0x5a5a5a5a5a5a5a5aULL);
    for (int i = 0; i < kN; ++i) dst.p[i] = sentinel;
    store_vec(dst.p + o, got);
    for (int i = 0; i < kN; ++i) {
      const bool inside = i >= o && i < o + kILP;
      CHECK(same_bits(dst.p[i], inside ? src.p[i] : sentinel), "%s store_vec at %d, element %d",
            name, o, i);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 16-bit conversions against decoders written from the formats.

double half_value(uint16_t h) {
  const int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
  double v;
  if (e == 0) {
    v = std::ldexp(static_cast<double>(m), -24);
  } else if (e == 31) {
    v = m != 0 ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<double>(1024 + m), e - 25);
  }
  return sign ? -v : v;
}

double bf16_value(uint16_t b) {
  const uint32_t f = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &f, 4);
  return x;
}

template <typename T>
double value16(uint16_t b) {
  return std::is_same<T, __half>::value ? half_value(b) : bf16_value(b);
}

// store(x) must be the representable value nearest to x, ties to an even last bit.
template <typename T>
void check_rounding(float x, const char* name) {
  const uint16_t r = bits16(ElemTraits<T>::store(x));
  const double xd = x;
  if (std::isnan(xd)) {
    CHECK(std::isnan(value16<T>(r)), "%s store(nan)", name);
    return;
  }
  const uint16_t sign = static_cast<uint16_t>(std::signbit(x) ? 0x8000 : 0);
  const uint16_t mag = r & 0x7fff;
  CHECK((r & 0x8000) == sign || mag == 0, "%s store(%.9g) sign", name, xd);
  const double ax = std::fabs(xd), v = std::fabs(value16<T>(r));
  if (std::isinf(v)) {  // overflow: x is at least the midpoint past the largest finite value
    const double top = std::fabs(value16<T>(0x7bff)), top_ulp = std::ldexp(1.0, 5);
    if (std::is_same<T, __half>::value) CHECK(ax >= top + top_ulp / 2, "%s overflow", name);
    return;
  }
  const double d = std::fabs(ax - v);
  if (mag > 0) {
    const double lo = std::fabs(ax - std::fabs(value16<T>(mag - 1)));
    CHECK(d < lo || (d == lo && (mag & 1) == 0), "%s store(%.9g) = 0x%04x, below is nearer", name,
          xd, r);
  }
  const double above = std::fabs(value16<T>(mag + 1));
  if (!std::isinf(above) && !std::isnan(above)) {
    const double hi = std::fabs(ax - above);
    CHECK(d < hi || (d == hi && (mag & 1) == 0), "%s store(%.9g) = 0x%04x, above is nearer", name,
          xd, r);
  }
}

template <typename T>
void check_conversions(const char* name, std::mt19937_64& rng) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const T x = from_bits<T>(b);
    const double want = value16<T>(static_cast<uint16_t>(b));
    const float got = ElemTraits<T>::load(x);
    if (std::isnan(want)) {
      CHECK(std::isnan(got), "%s load(0x%04x) is not NaN", name, b);
      continue;
    }
    CHECK(static_cast<double>(got) == want, "%s load(0x%04x) = %.9g, want %.9g", name, b, got,
          want);
    CHECK(bits16(ElemTraits<T>::store(got)) == b, "%s store(load(0x%04x))", name, b);
    // The midpoint to the next value up (exact in float): a tie.
    const double next = value16<T>(static_cast<uint16_t>(b + 1));
    if ((b & 0x7fff) < 0x7bff || (!std::is_same<T, __half>::value && (b & 0x7fff) < 0x7f7f)) {
      if (!std::isnan(next) && !std::isinf(next)) {
        check_rounding<T>(static_cast<float>((want + next) / 2), name);
      }
    }
  }
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int i = 0; i < 200000; ++i) {
    const float scale = std::ldexp(1.0f, static_cast<int>(rng() % 48) - 30);
    check_rounding<T>(u(rng) * scale, name);
    check_rounding<T>(from_bits<float>(rng() & 0xffffffffULL), name);  // any float, NaN, inf
  }
}

// ---------------------------------------------------------------------------------------------
// sgd_block / adam_block: vector path against the strided scalar path.

template <typename T>
T make_elem(float x) {
  return ElemTraits<T>::store(x);
}

template <typename T, typename O, int Depth, typename RunBlock>
void check_blocks(const char* name, std::mt19937_64& rng, const RunBlock& run_block) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::vector<int64_t> sizes = {1, 3, 4, 5, 8, 127, 1024, 4097, kChunkSize + 7, 9};
  const int n = static_cast<int>(sizes.size());
  // Per tensor: param, grad (T), states (O).
  std::vector<Buf<T>> pg;
  std::vector<Buf<O>> st;
  std::vector<float> steps(n);
  for (int i = 0; i < n; ++i) {
    for (int k = 0; k < 2; ++k) {
      pg.emplace_back(sizes[i]);
      for (int64_t j = 0; j < sizes[i]; ++j) pg.back().p[j] = make_elem<T>(nd(rng));
    }
    for (int k = 2; k < Depth; ++k) {
      st.emplace_back(sizes[i]);
      for (int64_t j = 0; j < sizes[i]; ++j) {
        st.back().p[j] = static_cast<O>(k == 2 ? nd(rng) : std::fabs(nd(rng)) + 0.1f * (k - 2));
      }
    }
    steps[i] = static_cast<float>(i % 3);  // SGD: 0 = first momentum step
  }
  // Two groups, every flag on in one of them.
  double hparams[2 * kGroupFields] = {};
  double* g0 = hparams;
  double* g1 = hparams + kGroupFields;
  g0[kWeightDecay] = 0.01;
  g0[kDampening] = Depth == 3 ? 0.1 : 0.999;
  g0[kEps] = 1e-8;
  g0[kNesterov] = 1;
  g0[kAmsgrad] = 1;
  g0[kDecoupled] = 1;
  g1[kDampening] = Depth == 3 ? 0.0 : 0.99;
  g1[kEps] = 1e-6;
  g1[kMaximize] = 1;
  const double group_lr[4] = {0.05, 0.9, 0.01, Depth == 3 ? 0.0 : 0.8};
  for (int scaled = 0; scaled < 2; ++scaled) {
    const float scale = 4.0f, no_inf = 0.0f;
    const UpdateArgs args{hparams, group_lr, scaled ? &scale : nullptr, scaled ? &no_inf : nullptr,
                          nullptr};
    std::vector<Buf<T>> pg_v(pg), pg_s(pg);
    std::vector<Buf<O>> st_v(st), st_s(st);
    for (int pass = 0; pass < 2; ++pass) {
      std::vector<Buf<T>>& P = pass == 0 ? pg_v : pg_s;
      std::vector<Buf<O>>& S = pass == 0 ? st_v : st_s;
      std::vector<TensorEntry<Depth>> entries(n);
      for (int i = 0; i < n; ++i) {
        entries[i].ptr[0] = P[2 * i].p;
        entries[i].ptr[1] = P[2 * i + 1].p;
        for (int k = 2; k < Depth; ++k) entries[i].ptr[k] = S[(Depth - 2) * i + k - 2].p;
        if (i % 4 == 3) entries[i].ptr[Depth - 1] = nullptr;  // no momentum buffer / no amsgrad
        entries[i].numel = sizes[i];
        entries[i].step = &steps[i];
        entries[i].group = i % 2;
      }
      int vector_tensors = 0;
      build_plan<Depth>(entries.data(), n, 0, 0, [&](const TensorListMeta<Depth>& m, int blocks) {
        TensorListMeta<Depth> meta = m;
        for (int t = 0; t < TensorListMeta<Depth>::kMaxTensors; ++t) {
          if (pass == 0) vector_tensors += meta.aligned[t];
          if (pass == 1) meta.aligned[t] = 0;
        }
        const int block_dim = 96;
        for (int b = blocks - 1; b >= 0; --b) {
          for (int th = block_dim - 1; th >= 0; --th) run_block(meta, args, b, th, block_dim);
        }
      });
      if (pass == 0)
        CHECK(vector_tensors >= n, "%s: only %d aligned tensors", name, vector_tensors);
    }
    int changed = 0;
    for (size_t k = 0; k < pg.size(); ++k) {
      CHECK(std::memcmp(pg_v[k].p, pg_s[k].p, pg[k].n * sizeof(T)) == 0,
            "%s scaled=%d: param/grad %zu differs between the vector and scalar paths", name,
            scaled, k);
      changed += k % 2 == 0 && std::memcmp(pg_v[k].p, pg[k].p, pg[k].n * sizeof(T)) != 0;
    }
    CHECK(changed >= n - 2, "%s: only %d of %d params changed", name, changed, n);
    for (size_t k = 0; k < st.size(); ++k) {
      CHECK(std::memcmp(st_v[k].p, st_s[k].p, st[k].n * sizeof(O)) == 0,
            "%s scaled=%d: state %zu differs between the vector and scalar paths", name, scaled, k);
    }
  }
}

template <typename T>
void check_sgd_adam(const char* name, std::mt19937_64& rng) {
  using O = typename ElemTraits<T>::Opmath;
  check_blocks<T, O, 3>(name, rng,
                        [](const TensorListMeta<3>& m, const UpdateArgs& a, int b, int t, int bd) {
                          sgd_block<T>(m, a, b, t, bd);
                        });
  check_blocks<T, O, 5>(name, rng,
                        [](const TensorListMeta<5>& m, const UpdateArgs& a, int b, int t, int bd) {
                          adam_block<T>(m, a, b, t, bd);
                        });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "misaligned") == 0) {
    Buf<float> buf(16);
    float got[kILP];
    load_vec(buf.p + 1, got);  // 4 bytes past 16: UBSan must report it
    std::printf("misaligned vector load was not reported: %g\n", static_cast<double>(got[0]));
    return 0;
  }
  std::mt19937_64 rng(7);
  check_load_store<float>("float");
  check_load_store<double>("double");
  check_load_store<__half>("half");
  check_load_store<__nv_bfloat16>("bfloat16");
  check_conversions<__half>("half", rng);
  check_conversions<__nv_bfloat16>("bfloat16", rng);
  check_sgd_adam<float>("float", rng);
  check_sgd_adam<double>("double", rng);
  check_sgd_adam<__half>("half", rng);
  check_sgd_adam<__nv_bfloat16>("bfloat16", rng);
  std::printf("ok: load_vec/store_vec, 16-bit conversions, vector == scalar blocks in 4 dtypes\n");
  return 0;
}
