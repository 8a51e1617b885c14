// Multi-tensor apply for the CUDA update kernels, in the spirit of ATen's
// MultiTensorApply.cuh: the tensors of one bucket are cut into chunks of
// kChunkSize elements; one CUDA block updates one (tensor, chunk) pair. A
// launch carries, by value, a metadata block of tensor pointers, element
// counts, groups and step pointers plus the (tensor, chunk) pair of every
// block; a bucket that does not fit one metadata block is split across
// several launches (a tensor may continue in the next launch).
//
// Everything here is plain __host__ __device__ C++ without torch headers: the
// __global__ kernels (csrc/cuda/kernels.cu) are three-line wrappers over the
// *_block functions, and the CPU emulator (csrc/cpu/emulate_cuda.cpp) runs the
// same functions over every (block, thread) of the same launch plan.
//
// Element types: the param/grad type T is float, double or a 16-bit float
// type; ElemTraits<T> converts it to and from its opmath type (float, or
// double for double). State (momentum buffer, exp_avg, ...) is stored in the
// opmath type. ElemTraits is specialised for the 16-bit types by the file that
// instantiates the bodies (__half / __nv_bfloat16 in the .cu, c10::Half /
// c10::BFloat16 in the emulator), so this header needs neither.
#pragma once

#include <cstdint>
#include <type_traits>

#include "hd.h"
#include "schedule.h"
#include "update.h"

// Compiled with FUSEDLR_HOST_VECTOR_PATH (see load_vec), this header's code lives in an inline
// namespace: the same source names, other symbols, so its inline functions (which take the vector
// branch) never merge with the host build's (which take the scalar one) in one library.
#if defined(FUSEDLR_HOST_VECTOR_PATH)
#define FUSEDLR_MT_BEGIN inline namespace host_vector_path {
#define FUSEDLR_MT_END }
#else
#define FUSEDLR_MT_BEGIN
#define FUSEDLR_MT_END
#endif

namespace fusedlr {
namespace mt {
FUSEDLR_MT_BEGIN

constexpr int64_t kChunkSize = 65536;  // elements per (tensor, chunk) block
constexpr int kILP = 4;                // elements per thread per iteration
constexpr int kVectorAlign = 16;       // bytes: every pointer of a tensor, for the vector path
constexpr int kMaxBlocks = 320;        // (tensor, chunk) pairs per launch, classic layout
constexpr int kBlockThreads = 512;     // threads per block of the update kernels
constexpr int kStepTensors = 256;      // tensors per step-increment launch, classic layout
constexpr int kStepThreads = 256;      // threads per block of the step-increment kernel
constexpr int kEvalThreads = 64;       // threads per block of the schedule-eval kernel

// Kernel-argument layouts. kClassicArgs fits the classic 4 KB parameter limit, which every
// toolkit and device has; kLargeArgs fits the 32 KB (32764-byte) limit of CUDA 12.1+ on Volta and
// newer (compute capability >= 7.0, driver >= 12.1), 8x as many tensors per launch. The launcher
// picks kLargeArgs when both the toolkit it was compiled with and the device and driver it runs on
// allow it (csrc/cuda/kernels.cu, kernel_arg_layout); kClassicArgs is the fallback.
enum ArgLayout : int { kClassicArgs = 0, kLargeArgs = 1 };
constexpr int kClassicParamBytes = 4000;  // what a classic-layout kernel argument may take
constexpr int kLargeParamBytes = 32000;   // what a large-layout one may take (limit: 32764)
constexpr int kLargeMaxBlocks = 1280;     // (tensor, chunk) pairs per launch, large layout
constexpr int kLargeStepTensors = 2304;   // tensors per step-increment launch, large layout

// Tensors per launch by pointer depth, chosen so that the kernel argument
// (metadata + UpdateArgs) stays below the classic 4 KB parameter limit.
// Depth 3: SGD (param, grad, momentum buffer); depth 5: Adam (param, grad,
// exp_avg, exp_avg_sq, max_exp_avg_sq).
template <int Depth>
struct DepthTraits;
template <>
struct DepthTraits<3> {
  static constexpr int kMaxTensors = 48;
};
template <>
struct DepthTraits<4> {  // schedule-free (y, grad, z, v); master SGD (master, grad, param, buf)
  static constexpr int kMaxTensors = 40;
};
template <>
struct DepthTraits<5> {
  static constexpr int kMaxTensors = 36;
};
template <>
struct DepthTraits<6> {  // master Adam (master, grad, param, exp_avg, exp_avg_sq, max_exp_avg_sq)
  static constexpr int kMaxTensors = 32;
};

// The same for the 32 KB layout (block_to_tensor is then uint16).
template <int Depth>
struct LargeDepthTraits;
template <>
struct LargeDepthTraits<3> {
  static constexpr int kMaxTensors = 512;
};
template <>
struct LargeDepthTraits<4> {
  static constexpr int kMaxTensors = 448;
};
template <>
struct LargeDepthTraits<5> {
  static constexpr int kMaxTensors = 384;
};
template <>
struct LargeDepthTraits<6> {
  static constexpr int kMaxTensors = 320;
};

// Capacity of a metadata block by depth and layout.
template <int Depth, int Layout>
struct MetaCapacity {
  static constexpr int kMaxTensors = DepthTraits<Depth>::kMaxTensors;
  static constexpr int kMaxBlocks = mt::kMaxBlocks;
  using BlockTensor = uint8_t;
};
template <int Depth>
struct MetaCapacity<Depth, kLargeArgs> {
  static constexpr int kMaxTensors = LargeDepthTraits<Depth>::kMaxTensors;
  static constexpr int kMaxBlocks = kLargeMaxBlocks;
  using BlockTensor = uint16_t;
};

// Conversion between a param element and its opmath type. Specialised for
// 16-bit types outside this header (see the file comment).
template <typename T>
struct ElemTraits;
template <>
struct ElemTraits<float> {
  using Opmath = float;
  static FUSEDLR_INLINE float load(float x) { return x; }
  static FUSEDLR_INLINE float store(float x) { return x; }
};
template <>
struct ElemTraits<double> {
  using Opmath = double;
  static FUSEDLR_INLINE double load(double x) { return x; }
  static FUSEDLR_INLINE double store(double x) { return x; }
};

// Per-launch metadata, passed by value as the kernel argument. Pointer k of
// tensor t is addresses[k][t]; unused optional state pointers are null.
template <int Depth, int Layout = kClassicArgs>
struct TensorListMeta {
  using Capacity = MetaCapacity<Depth, Layout>;
  static constexpr int kDepth = Depth;
  static constexpr int kLayout = Layout;
  static constexpr int kMaxTensors = Capacity::kMaxTensors;
  static constexpr int kMaxBlocks = Capacity::kMaxBlocks;
  void* addresses[Depth][kMaxTensors];
  int64_t numel[kMaxTensors];
  float* step[kMaxTensors];  // the tensor's step count (read only by the update)
  int32_t group[kMaxTensors];
  uint8_t aligned[kMaxTensors];  // all pointers of the tensor are kVectorAlign-aligned
  typename Capacity::BlockTensor block_to_tensor[kMaxBlocks];
  int32_t block_to_chunk[kMaxBlocks];
};

// Arguments shared by every launch of one update call (device pointers).
struct UpdateArgs {
  const double* hparams;       // [groups, kGroupFields]
  const double* group_lr;      // [groups, 2] = (lr, momentum / beta1)
  const float* grad_scale;     // null: no grad scaler (or a float64 one, below)
  const float* found_inf;      // null: no overflow check
  const double* grad_scale64;  // a float64 grad_scale (clipping float64 params): read instead
};

// Metadata of one step-increment launch: thread i advances tensor i's step.
template <int Layout = kClassicArgs>
struct StepMetaT {
  static constexpr int kLayout = Layout;
  static constexpr int kMaxSteps = Layout == kLargeArgs ? kLargeStepTensors : kStepTensors;
  float* step[kMaxSteps];
  int32_t group[kMaxSteps];
  uint8_t has_state[kMaxSteps];  // SGD: a momentum buffer exists
  int32_t count;
};
using StepMeta = StepMetaT<kClassicArgs>;

// The kernels' parameter lists: (meta, UpdateArgs) and (StepMeta, UpdateArgs, bool).
template <typename Meta>
constexpr int update_param_bytes() {
  return static_cast<int>(sizeof(Meta) + sizeof(UpdateArgs));
}
template <typename Meta>
constexpr int step_param_bytes() {
  return static_cast<int>(sizeof(Meta) + sizeof(UpdateArgs) + 8);
}
static_assert(update_param_bytes<TensorListMeta<3>>() <= kClassicParamBytes, "kernel arg > 4 KB");
static_assert(update_param_bytes<TensorListMeta<5>>() <= kClassicParamBytes, "kernel arg > 4 KB");
static_assert(step_param_bytes<StepMeta>() <= kClassicParamBytes, "kernel argument > 4 KB");
static_assert(update_param_bytes<TensorListMeta<4>>() <= kClassicParamBytes, "kernel arg > 4 KB");
static_assert(update_param_bytes<TensorListMeta<6>>() <= kClassicParamBytes, "kernel arg > 4 KB");
static_assert(update_param_bytes<TensorListMeta<4, kLargeArgs>>() <= kLargeParamBytes,
              "kernel argument > 32 KB");
static_assert(update_param_bytes<TensorListMeta<6, kLargeArgs>>() <= kLargeParamBytes,
              "kernel argument > 32 KB");
static_assert(update_param_bytes<TensorListMeta<3, kLargeArgs>>() <= kLargeParamBytes,
              "kernel argument > 32 KB");
static_assert(update_param_bytes<TensorListMeta<5, kLargeArgs>>() <= kLargeParamBytes,
              "kernel argument > 32 KB");
static_assert(step_param_bytes<StepMetaT<kLargeArgs>>() <= kLargeParamBytes,
              "kernel argument > 32 KB");
static_assert(DepthTraits<3>::kMaxTensors <= 256 && DepthTraits<5>::kMaxTensors <= 256,
              "block_to_tensor is uint8 in the classic layout");
static_assert(LargeDepthTraits<3>::kMaxTensors <= 65536 &&
                  LargeDepthTraits<5>::kMaxTensors <= 65536,
              "block_to_tensor is uint16 in the large layout");

// ---------------------------------------------------------------------------------------------
// Host side: the launch plan.

// One tensor of a bucket as the plan builder sees it.
template <int Depth>
struct TensorEntry {
  void* ptr[Depth];  // param, grad, then state pointers (null when absent)
  int64_t numel;
  float* step;
  int32_t group;
};

inline bool is_aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kVectorAlign == 0; }

// Builds the launch plan of `n` tensors and calls emit(meta, blocks) once per
// launch, in order. A launch holds at most max_tensors tensors (clamped to the
// metadata capacity) and max_blocks (tensor, chunk) blocks; a tensor whose
// chunks do not fit continues as tensor 0 of the next launch. Empty tensors
// get no block. Chunk indices are int32 (a tensor may have 2^31 chunks, i.e.
// 2^47 elements); element offsets are int64.
template <int Depth, int Layout = kClassicArgs, typename Emit>
void build_plan(const TensorEntry<Depth>* tensors, int64_t n, int max_tensors, int max_blocks,
                const Emit& emit) {
  using Meta = TensorListMeta<Depth, Layout>;
  using BlockTensor = typename Meta::Capacity::BlockTensor;
  if (max_tensors < 1 || max_tensors > Meta::kMaxTensors) max_tensors = Meta::kMaxTensors;
  if (max_blocks < 1 || max_blocks > Meta::kMaxBlocks) max_blocks = Meta::kMaxBlocks;
  int64_t last = -1;  // the last tensor that has elements
  for (int64_t i = 0; i < n; ++i) {
    if (tensors[i].numel > 0) last = i;
  }
  Meta meta{};
  int loc_tensor = 0;
  int loc_block = 0;
  const auto add_tensor = [&](const TensorEntry<Depth>& e) {
    bool aligned = true;
    for (int k = 0; k < Depth; ++k) {
      meta.addresses[k][loc_tensor] = e.ptr[k];
      aligned = aligned && is_aligned(e.ptr[k]);
    }
    meta.numel[loc_tensor] = e.numel;
    meta.step[loc_tensor] = e.step;
    meta.group[loc_tensor] = e.group;
    meta.aligned[loc_tensor] = aligned ? 1 : 0;
    ++loc_tensor;
  };
  for (int64_t i = 0; i <= last; ++i) {
    const TensorEntry<Depth>& e = tensors[i];
    if (e.numel <= 0) continue;
    add_tensor(e);
    const int64_t chunks = (e.numel + kChunkSize - 1) / kChunkSize;
    for (int64_t c = 0; c < chunks; ++c) {
      meta.block_to_tensor[loc_block] = static_cast<BlockTensor>(loc_tensor - 1);
      meta.block_to_chunk[loc_block] = static_cast<int32_t>(c);
      ++loc_block;
      const bool last_chunk = c == chunks - 1;
      const bool tensors_full = loc_tensor == max_tensors && last_chunk;
      const bool blocks_full = loc_block == max_blocks;
      if (tensors_full || blocks_full || (i == last && last_chunk)) {
        emit(meta, loc_block);
        loc_block = 0;
        loc_tensor = 0;
        if (!last_chunk) add_tensor(e);  // the tensor continues in the next launch
      }
    }
  }
}

// Calls emit(meta) for each step-increment launch of `n` tensors (StepMetaT<Layout>::kMaxSteps
// a launch: 256 in the classic layout, 2304 in the large one).
template <int Layout = kClassicArgs, typename Emit>
void build_step_plan(float* const* steps, const int32_t* groups, const uint8_t* has_state,
                     int64_t n, const Emit& emit) {
  using Meta = StepMetaT<Layout>;
  // Zero-initialised, and again after each launch: the slots past `count` are never read,
  // but the whole struct is the kernel argument, so no uninitialised byte is copied.
  Meta meta{};
  for (int64_t i = 0; i < n; ++i) {
    meta.step[meta.count] = steps[i];
    meta.group[meta.count] = groups[i];
    meta.has_state[meta.count] = has_state[i];
    if (++meta.count == Meta::kMaxSteps || i == n - 1) {
      emit(meta);
      meta = Meta{};
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Device side: per-block bodies. `block`, `thread` and `block_dim` are
// blockIdx.x, threadIdx.x and blockDim.x in a kernel, loop indices in the
// emulator. Blocks and threads are independent: no shared memory, no barrier.

// The elements [start, start + n) of a block's tensor.
struct ChunkSpan {
  int tensor;
  int64_t start;
  int n;
};

template <typename Meta>
FUSEDLR_INLINE ChunkSpan chunk_span(const Meta& meta, int block) {
  ChunkSpan s;
  s.tensor = meta.block_to_tensor[block];
  s.start = static_cast<int64_t>(meta.block_to_chunk[block]) * kChunkSize;
  const int64_t rest = meta.numel[s.tensor] - s.start;
  s.n = static_cast<int>(rest < kChunkSize ? rest : kChunkSize);
  return s;
}

// kILP consecutive elements at a kVectorAlign-aligned address (16-bit types:
// one 8-byte load; 32-bit: one 16-byte load; 64-bit: two 16-byte loads).
template <typename T>
struct alignas(sizeof(T) * kILP < kVectorAlign ? sizeof(T) * kILP : kVectorAlign) Half4 {
  T v[kILP / 2];
};
template <typename T>
struct alignas(sizeof(T) * kILP < kVectorAlign ? sizeof(T) * kILP : kVectorAlign) Full4 {
  T v[kILP];
};

// The vector branch is the device's; FUSEDLR_HOST_VECTOR_PATH selects it on the host too, so
// host tests (tests/cpp/vector_test.cpp, the fake CUDA runtime) run it under UBSan's alignment
// check. Without it the host path is the scalar loop.
#if defined(__CUDA_ARCH__) || defined(FUSEDLR_HOST_VECTOR_PATH)
#define FUSEDLR_VECTOR_PATH 1
#endif

template <typename T>
FUSEDLR_INLINE void load_vec(const T* src, T (&dst)[kILP]) {
#if defined(FUSEDLR_VECTOR_PATH)
  if constexpr (sizeof(T) * kILP > kVectorAlign) {
    const Half4<T> a = reinterpret_cast<const Half4<T>*>(src)[0];
    const Half4<T> b = reinterpret_cast<const Half4<T>*>(src)[1];
#pragma unroll
    for (int k = 0; k < kILP / 2; ++k) {
      dst[k] = a.v[k];
      dst[k + kILP / 2] = b.v[k];
    }
  } else {
    const Full4<T> a = *reinterpret_cast<const Full4<T>*>(src);
#pragma unroll
    for (int k = 0; k < kILP; ++k) dst[k] = a.v[k];
  }
#else
  for (int k = 0; k < kILP; ++k) dst[k] = src[k];
#endif
}

template <typename T>
FUSEDLR_INLINE void store_vec(T* dst, const T (&src)[kILP]) {
#if defined(FUSEDLR_VECTOR_PATH)
  if constexpr (sizeof(T) * kILP > kVectorAlign) {
    Half4<T> a, b;
#pragma unroll
    for (int k = 0; k < kILP / 2; ++k) {
      a.v[k] = src[k];
      b.v[k] = src[k + kILP / 2];
    }
    reinterpret_cast<Half4<T>*>(dst)[0] = a;
    reinterpret_cast<Half4<T>*>(dst)[1] = b;
  } else {
    Full4<T> a;
#pragma unroll
    for (int k = 0; k < kILP; ++k) a.v[k] = src[k];
    *reinterpret_cast<Full4<T>*>(dst) = a;
  }
#else
  for (int k = 0; k < kILP; ++k) dst[k] = src[k];
#endif
}

// Loads element i of a chunk into opmath registers (param / grad type T).
template <typename T>
FUSEDLR_INLINE typename ElemTraits<T>::Opmath load_elem(const T* p, int i) {
  return ElemTraits<T>::load(p[i]);
}

FUSEDLR_INLINE bool skip_update(const UpdateArgs& a) {
  return a.found_inf != nullptr && *a.found_inf != 0.0f;
}

FUSEDLR_INLINE double grad_scale_of(const UpdateArgs& a) {
  if (a.grad_scale64 != nullptr) return *a.grad_scale64;
  return a.grad_scale != nullptr ? static_cast<double>(*a.grad_scale) : 1.0;
}

// Runs f(i, count) over the block's elements with kILP elements per thread and
// iteration: contiguous vector groups [i, i + kILP) when `aligned` (then a
// scalar tail of n % kILP elements, f(i, 1)), else kILP elements strided by
// block_dim (f(i, -1): element i + k * block_dim for k < kILP while < n).
template <typename F>
FUSEDLR_INLINE void for_chunk(bool aligned, int n, int thread, int block_dim, const F& f) {
  if (aligned) {
    const int nvec = n - n % kILP;
    for (int i = thread * kILP; i < nvec; i += block_dim * kILP) f(i, kILP);
    for (int i = nvec + thread; i < n; i += block_dim) f(i, 1);
  } else {
    for (int i = thread; i < n; i += block_dim * kILP) f(i, -1);
  }
}

// Where a block reads and writes the param (the CPU spans' ParamIO). Regular (kMaster false):
// the param of type T at pointer 0 and its grad at 1, written back when the coefficients say
// so. master_weights in one pass (kMaster true): the float32 master at 0 is the param the
// update reads and writes, the grad (T) at 1 is never written back, and the 16-bit param at 2
// receives the master rounded to T (to nearest even). The state follows from pointer kState.
template <typename T, bool kMaster>
struct BlockParam {
  using O = typename ElemTraits<T>::Opmath;  // float for the master kernels' 16-bit T
  using P = std::conditional_t<kMaster, float, T>;
  static constexpr int kState = kMaster ? 3 : 2;

  P* p;
  T* grad;
  T* low;  // kMaster only

  template <int Depth, int Layout>
  static FUSEDLR_INLINE BlockParam of(const TensorListMeta<Depth, Layout>& meta, int t,
                                      int64_t start) {
    T* low = nullptr;
    if constexpr (kMaster) low = static_cast<T*>(meta.addresses[2][t]) + start;
    return BlockParam{static_cast<P*>(meta.addresses[0][t]) + start,
                      static_cast<T*>(meta.addresses[1][t]) + start, low};
  }
  // kILP params from element i (vector access: the tensor's pointers are aligned).
  FUSEDLR_INLINE void load(int i, O (&pv)[kILP]) const {
    P pr[kILP];
    load_vec(p + i, pr);
#pragma unroll
    for (int k = 0; k < kILP; ++k) pv[k] = ElemTraits<P>::load(pr[k]);
  }
  FUSEDLR_INLINE void store(int i, const O (&pv)[kILP]) const {
    P pr[kILP];
#pragma unroll
    for (int k = 0; k < kILP; ++k) pr[k] = ElemTraits<P>::store(pv[k]);
    store_vec(p + i, pr);
    if constexpr (kMaster) {
      T lq[kILP];
#pragma unroll
      for (int k = 0; k < kILP; ++k) lq[k] = ElemTraits<T>::store(pv[k]);
      store_vec(low + i, lq);
    }
  }
  FUSEDLR_INLINE O load1(int j) const { return load_elem(p, j); }
  FUSEDLR_INLINE void store1(int j, O v) const {
    p[j] = ElemTraits<P>::store(v);
    if constexpr (kMaster) low[j] = ElemTraits<T>::store(v);
  }
};

// SGD update of one (tensor, chunk) block: T is the param type (the grad's), kMaster as in
// BlockParam, the momentum buffer (O) at pointer kState.
template <typename T, bool kMaster, int Depth, int Layout>
FUSEDLR_INLINE void sgd_update_block(const TensorListMeta<Depth, Layout>& meta,
                                     const UpdateArgs& args, int block, int thread, int block_dim) {
  using IO = BlockParam<T, kMaster>;
  using O = typename IO::O;
  static_assert(Depth == IO::kState + 1, "SGD: param pointers and the momentum buffer");
  if (skip_update(args)) return;
  const ChunkSpan span = chunk_span(meta, block);
  const int t = span.tensor;
  const int64_t g = meta.group[t];
  SgdScalars s = make_sgd_scalars(args.hparams + g * kGroupFields, args.group_lr + 2 * g,
                                  static_cast<double>(*meta.step[t]), grad_scale_of(args));
  O* buf = static_cast<O*>(meta.addresses[IO::kState][t]);
  s.has_buf = s.has_buf && buf != nullptr;  // (the CPU op rejects momentum without a buffer)
  const SgdCoeffs<O> c = SgdCoeffs<O>::template make<O>(s);
  const IO io = IO::of(meta, t, span.start);
  if (c.has_buf()) buf += span.start;
  const bool load_buf = c.has_buf() && !c.first();
  const bool store_grad = !kMaster && c.store_grad();
  const int n = span.n;
  for_chunk(meta.aligned[t] != 0, n, thread, block_dim, [&](int i, int count) {
    if (count == kILP) {
      O pv[kILP] = {}, gv[kILP] = {}, bv[kILP] = {};
      T gq[kILP];
      io.load(i, pv);
      load_vec(io.grad + i, gq);
      if (load_buf) load_vec(buf + i, bv);
#pragma unroll
      for (int k = 0; k < kILP; ++k) {
        gv[k] = ElemTraits<T>::load(gq[k]);
        if (!load_buf) bv[k] = O(0);
        sgd_element(pv[k], gv[k], bv[k], c);
        gq[k] = ElemTraits<T>::store(gv[k]);
      }
      io.store(i, pv);
      if (store_grad) store_vec(io.grad + i, gq);
      if (c.has_buf()) store_vec(buf + i, bv);
      return;
    }
    // Strided (misaligned tensor) elements and the scalar tail, one element at a time:
    // loading all kILP first needs more than the 40 registers of the launch bounds.
    const int stride = count == 1 ? 0 : block_dim;
    const int lim = count == 1 ? 1 : kILP;
#pragma unroll
    for (int k = 0; k < kILP; ++k) {
      const int j = i + k * stride;
      if (k < lim && j < n) {
        O pe = io.load1(j), ge = load_elem(io.grad, j);
        O be = load_buf ? buf[j] : O(0);
        sgd_element(pe, ge, be, c);
        io.store1(j, pe);
        if (store_grad) io.grad[j] = ElemTraits<T>::store(ge);
        if (c.has_buf()) buf[j] = be;
      }
    }
  });
}

// Adam / AdamW update of one (tensor, chunk) block: as sgd_update_block, with m, v and
// (amsgrad) vmax at pointers kState, kState + 1 and kState + 2.
template <typename T, bool kMaster, int Depth, int Layout>
FUSEDLR_INLINE void adam_update_block(const TensorListMeta<Depth, Layout>& meta,
                                      const UpdateArgs& args, int block, int thread,
                                      int block_dim) {
  using IO = BlockParam<T, kMaster>;
  using O = typename IO::O;
  static_assert(Depth == IO::kState + 3, "Adam: param pointers, m, v and vmax");
  if (skip_update(args)) return;
  const ChunkSpan span = chunk_span(meta, block);
  const int t = span.tensor;
  const int64_t g = meta.group[t];
  AdamScalars s = make_adam_scalars(args.hparams + g * kGroupFields, args.group_lr + 2 * g,
                                    static_cast<double>(*meta.step[t]), grad_scale_of(args));
  O* vmax = static_cast<O*>(meta.addresses[IO::kState + 2][t]);
  s.amsgrad = s.amsgrad && vmax != nullptr;  // (the CPU op rejects amsgrad without a slot)
  const AdamCoeffs<O> c = AdamCoeffs<O>::template make<O>(s);
  const IO io = IO::of(meta, t, span.start);
  O* m = static_cast<O*>(meta.addresses[IO::kState][t]) + span.start;
  O* v = static_cast<O*>(meta.addresses[IO::kState + 1][t]) + span.start;
  if (c.amsgrad()) vmax += span.start;
  const bool store_grad = !kMaster && c.store_grad();
  const int n = span.n;
  for_chunk(meta.aligned[t] != 0, n, thread, block_dim, [&](int i, int count) {
    if (count == kILP) {
      O pv[kILP] = {}, gv[kILP] = {}, mv[kILP] = {}, vv[kILP] = {}, xv[kILP] = {};
      T gq[kILP];
      io.load(i, pv);
      load_vec(io.grad + i, gq);
      load_vec(m + i, mv);
      load_vec(v + i, vv);
      if (c.amsgrad()) load_vec(vmax + i, xv);
#pragma unroll
      for (int k = 0; k < kILP; ++k) {
        gv[k] = ElemTraits<T>::load(gq[k]);
        if (!c.amsgrad()) xv[k] = O(0);
        adam_element<O, ScalarOps<O>>(pv[k], gv[k], mv[k], vv[k], xv[k], c);
        gq[k] = ElemTraits<T>::store(gv[k]);
      }
      io.store(i, pv);
      if (store_grad) store_vec(io.grad + i, gq);
      store_vec(m + i, mv);
      store_vec(v + i, vv);
      if (c.amsgrad()) store_vec(vmax + i, xv);
      return;
    }
    // Strided (misaligned tensor) elements and the scalar tail, one element at a time:
    // loading all kILP first needs more than the 40 registers of the launch bounds.
    const int stride = count == 1 ? 0 : block_dim;
    const int lim = count == 1 ? 1 : kILP;
#pragma unroll
    for (int k = 0; k < kILP; ++k) {
      const int j = i + k * stride;
      if (k < lim && j < n) {
        O pe = io.load1(j), ge = load_elem(io.grad, j), me = m[j], ve = v[j];
        O xe = c.amsgrad() ? vmax[j] : O(0);
        adam_element<O, ScalarOps<O>>(pe, ge, me, ve, xe, c);
        io.store1(j, pe);
        if (store_grad) io.grad[j] = ElemTraits<T>::store(ge);
        m[j] = me;
        v[j] = ve;
        if (c.amsgrad()) vmax[j] = xe;
      }
    }
  });
}

// The kernels' blocks: T is the param type; the master blocks' T is the 16-bit param's.
template <typename T, int Layout = kClassicArgs>
FUSEDLR_INLINE void sgd_block(const TensorListMeta<3, Layout>& meta, const UpdateArgs& args,
                              int block, int thread, int block_dim) {
  sgd_update_block<T, false>(meta, args, block, thread, block_dim);
}

template <typename T, int Layout = kClassicArgs>
FUSEDLR_INLINE void adam_block(const TensorListMeta<5, Layout>& meta, const UpdateArgs& args,
                               int block, int thread, int block_dim) {
  adam_update_block<T, false>(meta, args, block, thread, block_dim);
}

template <typename T, int Layout = kClassicArgs>
FUSEDLR_INLINE void sgd_master_block(const TensorListMeta<4, Layout>& meta, const UpdateArgs& args,
                                     int block, int thread, int block_dim) {
  sgd_update_block<T, true>(meta, args, block, thread, block_dim);
}

template <typename T, int Layout = kClassicArgs>
FUSEDLR_INLINE void adam_master_block(const TensorListMeta<6, Layout>& meta, const UpdateArgs& args,
                                      int block, int thread, int block_dim) {
  adam_update_block<T, true>(meta, args, block, thread, block_dim);
}

// Step-increment pass, launched after every update launch of the call so that
// no update block reads a step another block already advanced. Adam advances
// every step; SGD only the steps of tensors whose momentum buffer was updated
// (momentum != 0 and a buffer exists), as the CPU op does.
template <int Layout = kClassicArgs>
FUSEDLR_INLINE void step_block(const StepMetaT<Layout>& meta, const UpdateArgs& args, bool sgd,
                               int block, int thread, int block_dim) {
  const int i = block * block_dim + thread;
  if (i >= meta.count || skip_update(args)) return;
  if (sgd) {
    const int64_t g = meta.group[i];
    if (meta.has_state[i] == 0 || args.group_lr[2 * g + 1] == 0.0) return;
  }
  *meta.step[i] += 1.0f;
}

// Schedule evaluation: thread (block, thread) evaluates group block * block_dim + thread.
FUSEDLR_INLINE void eval_schedule_block(const double* prog, const double* hparams,
                                        const double* lr_scale, const int64_t* counter,
                                        int64_t groups, double* out, int block, int thread,
                                        int block_dim) {
  const int64_t g = static_cast<int64_t>(block) * block_dim + thread;
  if (g >= groups) return;
  eval_group(prog, hparams, lr_scale, *counter, g, out + 2 * g);
}

FUSEDLR_MT_END
}  // namespace mt
}  // namespace fusedlr
