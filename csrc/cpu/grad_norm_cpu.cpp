// fusedlr::grad_norms_(Tensor[] grads, float ord, Tensor(a!) out): out[i] = ||grads[i]||_ord,
// the norm pass of max_grad_norm / skip_nonfinite (fusedlr/_clip.py) on the CPU.
//
//   ord = 2:   sqrt(sum x^2)     ord = 1: sum |x|     ord = inf: max |x|
//   other ord: (sum |x|^ord)^(1 / ord)
//
// torch's _foreach_norm runs one linalg_vector_norm per tensor on the CPU, one thread each, and
// its out= variant allocates a result per tensor: it read a 16.8M-element fp32 grad at about a
// quarter of this machine's bandwidth. Here the tensors are cut into chunks run by one
// at::parallel_for; a chunk sums in kLanes independent accumulators of the opmath type (float
// for float / 16-bit grads, double for double), which the compiler vectorises without
// reassociating, and chunks are combined in double. A NaN anywhere gives a NaN norm for every
// ord (max would drop it: it is tracked apart), an Inf an Inf one (or NaN for ord = inf and a
// NaN). Grads are read only; out is a contiguous float64 tensor of len(grads) elements; nothing
// is allocated but the work list.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

namespace fusedlr {
namespace {

constexpr int64_t kChunk = 16384;        // float lanes sum 1024 elements each: error ~ 2e-6 typical
constexpr int64_t kSerialBelow = 65536;  // elements: smaller calls run on one thread
constexpr int kLanes = 16;

enum class Kind { kL2, kL1, kInf, kP };

// The chunk's partial: sum x^2 / sum |x| / max |x| / sum |x|^p, in double; NaN if a NaN was read.
template <typename T>
double chunk_partial(const T* x, int64_t n, Kind kind, double p) {
  using O = at::opmath_type<T>;  // float, or double for double
  O acc[kLanes] = {};
  O nan_probe[kLanes] = {};  // x * 0: 0 for finite x, NaN for NaN / Inf (max would drop a NaN)
  int64_t i = 0;
  const int64_t body = n - n % kLanes;
  switch (kind) {
    case Kind::kL2:
      for (; i < body; i += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
          const O v = static_cast<O>(x[i + k]);
          acc[k] += v * v;
        }
      }
      for (; i < n; ++i) acc[0] += static_cast<O>(x[i]) * static_cast<O>(x[i]);
      break;
    case Kind::kL1:
      for (; i < body; i += kLanes) {
        for (int k = 0; k < kLanes; ++k) acc[k] += std::abs(static_cast<O>(x[i + k]));
      }
      for (; i < n; ++i) acc[0] += std::abs(static_cast<O>(x[i]));
      break;
    case Kind::kInf:
      for (; i < body; i += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
          const O v = static_cast<O>(x[i + k]);
          const O a = std::abs(v);
          acc[k] = a > acc[k] ? a : acc[k];
          nan_probe[k] += v * O(0);
        }
      }
      for (; i < n; ++i) {
        const O v = static_cast<O>(x[i]);
        acc[0] = std::abs(v) > acc[0] ? std::abs(v) : acc[0];
        nan_probe[0] += v * O(0);
      }
      break;
    case Kind::kP: {
      double s = 0.0;
      for (; i < n; ++i) s += std::pow(std::abs(static_cast<double>(x[i])), p);
      return s;
    }
  }
  double out = 0.0;
  bool nan = false;
  for (int k = 0; k < kLanes; ++k) {
    const double a = static_cast<double>(acc[k]);
    if (kind == Kind::kInf) {
      out = a > out ? a : out;
      nan = nan || std::isnan(static_cast<double>(nan_probe[k]));
    } else {
      out += a;
    }
  }
  if (kind == Kind::kInf && nan) {  // an Inf also made the probe NaN: keep Inf unless a NaN
    for (int64_t j = 0; j < n; ++j) {
      if (std::isnan(static_cast<double>(x[j]))) return std::numeric_limits<double>::quiet_NaN();
    }
  }
  return out;
}

double partial_of(const at::Tensor& t, int64_t begin, int64_t end, Kind kind, double p) {
  const int64_t n = end - begin;
  switch (t.scalar_type()) {
    case at::kFloat:
      return chunk_partial(t.const_data_ptr<float>() + begin, n, kind, p);
    case at::kDouble:
      return chunk_partial(t.const_data_ptr<double>() + begin, n, kind, p);
    case at::kHalf:
      return chunk_partial(t.const_data_ptr<at::Half>() + begin, n, kind, p);
    default:
      return chunk_partial(t.const_data_ptr<at::BFloat16>() + begin, n, kind, p);
  }
}

struct Item {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

}  // namespace

void grad_norms_cpu(at::TensorList grads, double ord, const at::Tensor& out) {
  const char* op = "grad_norms_";
  const int64_t n = static_cast<int64_t>(grads.size());
  TORCH_CHECK(ord > 0.0, op, ": ord must be > 0 (or inf), got ", ord);
  TORCH_CHECK(out.scalar_type() == at::kDouble && out.is_contiguous() && out.numel() == n &&
                  out.device().is_cpu(),
              op, ": out must be a contiguous float64 CPU tensor of ", n, " elements");
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& g = grads[i];
    const at::ScalarType t = g.scalar_type();
    TORCH_CHECK(g.device().is_cpu() && g.layout() == at::kStrided, op, ": grads[", i,
                "] must be a dense CPU tensor");
    TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, op,
                ": grads[", i, "] has dtype ", t,
                "; supported: float32, float64, float16, bfloat16");
    TORCH_CHECK(g.is_non_overlapping_and_dense(), op, ": grads[", i,
                "] must be dense and non-overlapping (any such layout is read as flat memory)");
  }
  const Kind kind = std::isinf(ord) ? Kind::kInf
                    : ord == 2.0    ? Kind::kL2
                    : ord == 1.0    ? Kind::kL1
                                    : Kind::kP;
  thread_local std::vector<Item> items_scratch;
  thread_local std::vector<double> partial_scratch;
  std::vector<Item>& items = items_scratch;  // (references: the workers see this thread's)
  std::vector<double>& partials = partial_scratch;
  items.clear();
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t numel = grads[i].numel();
    total += numel;
    for (int64_t b = 0; b < numel; b += kChunk)
      items.push_back({i, b, std::min(numel, b + kChunk)});
  }
  partials.assign(items.size(), 0.0);
  const auto range = [&](int64_t b, int64_t e) {
    for (int64_t x = b; x < e; ++x) {
      const Item& it = items[x];
      partials[x] = partial_of(grads[it.tensor], it.begin, it.end, kind, ord);
    }
  };
  const int64_t n_items = static_cast<int64_t>(items.size());
  if (total < kSerialBelow) {
    range(0, n_items);
  } else {
    at::parallel_for(0, n_items, 1, range);
  }
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) o[i] = 0.0;
  for (int64_t x = 0; x < n_items; ++x) {
    double& r = o[items[x].tensor];
    const double v = partials[x];
    if (kind == Kind::kInf) {
      r = (std::isnan(v) || std::isnan(r)) ? std::numeric_limits<double>::quiet_NaN()
                                           : (v > r ? v : r);
    } else {
      r += v;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (kind == Kind::kL2) o[i] = std::sqrt(o[i]);
    if (kind == Kind::kP) o[i] = std::pow(o[i], 1.0 / ord);
  }
}

TORCH_LIBRARY_IMPL(fusedlr, CPU, m) { m.impl("grad_norms_", &grad_norms_cpu); }

}  // namespace fusedlr
