// CUDA launchers of fusedlr::eval_schedule_, sgd_update_ and adam_update_.
//
// Each op validates its arguments (check_bucket) before any write, takes the
// tensors apart into raw device pointers and calls the launch functions of
// kernels.cu on the current stream. Nothing here waits for the device: no
// .item(), no copy to the host, no synchronize. grad_scale and found_inf are
// read by the kernels through device pointers; the steps are advanced by a
// separate launch after every update launch of the call.
//
// Compiled with FUSEDLR_FAKE_CUDA (csrc/fake_cuda/), the same code runs on the CPU against the fake
// runtime: device guard and current stream come from cuda/c10_cuda_or_fake.h, CPU tensors stand in
// for CUDA ones, and the ops are registered as fusedlr_fake_cuda::* for the tests.
#include <torch/library.h>

#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include "check_args.h"
#include "cuda/c10_cuda_or_fake.h"
#include "cuda/elem_type_of.h"
#include "cuda/launch.h"

namespace fusedlr {
FUSEDLR_CUDA_ABI_BEGIN
namespace {

void check_cuda(const char* op, int err) {
  TORCH_CHECK(err == 0, op, ": CUDA launch failed: ", cuda::error_string(err));
}

// A one-element float32 view of an optional scalar tensor on `device`
// (converted on the device when it has another dtype).
// The one-element tensor the kernels read: float32, or float64 where `keep_double` and it is
// float64 (a clip coefficient for float64 params keeps its precision); other dtypes converted.
std::optional<at::Tensor> device_scalar(const char* op, const char* name,
                                        const std::optional<at::Tensor>& t,
                                        const at::Device& device, bool keep_double = false) {
  if (!t.has_value() || !t->defined()) return std::nullopt;
  TORCH_CHECK(t->numel() == 1, op, ": ", name, " must have one element, got ", t->numel());
  TORCH_CHECK(t->device() == device, op, ": ", name, " is on ", t->device(),
              " but the bucket is on ", device);
  if (t->scalar_type() == at::kFloat || (keep_double && t->scalar_type() == at::kDouble)) {
    return *t;
  }
  return t->to(at::kFloat);
}

template <typename T>
const T* ptr_of(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->scalar_type() == c10::CppTypeToScalarType<T>::value ? t->data_ptr<T>()
                                                                                 : nullptr;
}

// Runs `launch(type, tensors, count)` once per element type present in the bucket.
//
// A rejected call changes nothing: check_bucket ran before, and every kernel this call
// launches (the update kernel of each element type present, the step kernel) is checked
// here before the first launch (check_update_kernels: kernel image, JIT, thread limit).
// Past that, a launch can fail only on a broken context (a sticky error left by an
// earlier kernel, after which the device's memory cannot be trusted anyway); then the
// launches already queued by this call (other element types, earlier metadata blocks)
// stay queued and the op raises.
template <typename Launch>
void launch_by_type(const char* op, const BucketView& view,
                    const std::vector<cuda::UpdateTensor>& tensors, bool adam, int arg_layout,
                    const Launch& launch, bool master = false) {
  const auto check = [&](at::ScalarType t) {
    return master ? cuda::check_master_kernels(elem_type_of(t), adam, arg_layout)
                  : cuda::check_update_kernels(elem_type_of(t), adam, arg_layout);
  };
  const int64_t n = static_cast<int64_t>(tensors.size());
  if (n == 0) return;
  const at::ScalarType first = view.params[0]->scalar_type();
  bool uniform = true;
  for (int64_t i = 0; i < n; ++i) uniform = uniform && view.params[i]->scalar_type() == first;
  if (uniform) {
    check_cuda(op, check(first));
    check_cuda(op, launch(elem_type_of(first), tensors.data(), n));
    return;
  }
  std::vector<std::vector<cuda::UpdateTensor>> subsets;
  std::vector<at::ScalarType> types;
  for (at::ScalarType t : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
    std::vector<cuda::UpdateTensor> subset;
    for (int64_t i = 0; i < n; ++i) {
      if (view.params[i]->scalar_type() == t) subset.push_back(tensors[i]);
    }
    if (subset.empty()) continue;
    check_cuda(op, check(t));
    subsets.push_back(std::move(subset));
    types.push_back(t);
  }
  for (size_t k = 0; k < subsets.size(); ++k) {
    check_cuda(op, launch(elem_type_of(types[k]), subsets[k].data(),
                          static_cast<int64_t>(subsets[k].size())));
  }
}

struct Prepared {
  std::optional<at::Tensor> scale;
  std::optional<at::Tensor> inf;
  cuda::UpdateCall call;
};

Prepared prepare(const char* op, const at::Tensor& hparams, const at::Tensor& group_lr,
                 const std::optional<at::Tensor>& grad_scale,
                 const std::optional<at::Tensor>& found_inf) {
  const at::Device device = hparams.device();
  TORCH_CHECK(on_kernel_device(device), op, ": the CUDA kernel got tensors on ", device);
  Prepared p;
  p.scale = device_scalar(op, "grad_scale", grad_scale, device, /*keep_double=*/true);
  p.inf = device_scalar(op, "found_inf", found_inf, device);
  p.call.hparams = hparams.data_ptr<double>();
  p.call.group_lr = group_lr.data_ptr<double>();
  p.call.grad_scale = ptr_of<float>(p.scale);
  p.call.grad_scale64 = ptr_of<double>(p.scale);
  p.call.found_inf = ptr_of<float>(p.inf);
  p.call.stream = rt::getCurrentCUDAStream(device.index()).stream();
  p.call.arg_layout = cuda::kernel_arg_layout();  // under the device guard: this device's
  return p;
}

void launch_steps(const char* op, at::TensorList steps, const at::Tensor& meta,
                  const std::vector<uint8_t>& has_state, bool sgd, const cuda::UpdateCall& call) {
  const int64_t n = static_cast<int64_t>(steps.size());
  if (n == 0) return;
  const int64_t* mt = meta.data_ptr<int64_t>();
  std::vector<float*> ptrs(n);
  std::vector<int32_t> groups(n);
  for (int64_t i = 0; i < n; ++i) {
    ptrs[i] = steps[i].data_ptr<float>();
    groups[i] = static_cast<int32_t>(mt[2 * i]);
  }
  check_cuda(
      op, cuda::launch_step_increment(ptrs.data(), groups.data(), has_state.data(), n, sgd, call));
}

}  // namespace

void eval_schedule_cuda(const at::Tensor& program, const at::Tensor& hparams,
                        const at::Tensor& lr_scale, const at::Tensor& counter,
                        const at::Tensor& out) {
  const char* op = "eval_schedule_";
  TORCH_CHECK(program.scalar_type() == at::kDouble && program.is_contiguous(), op,
              ": program must be a contiguous float64 tensor");
  TORCH_CHECK(hparams.scalar_type() == at::kDouble && hparams.dim() == 2 &&
                  hparams.size(1) == kGroupFields && hparams.is_contiguous(),
              op, ": hparams must be a contiguous float64 tensor [groups, ", kGroupFields, "]");
  const int64_t groups = hparams.size(0);
  TORCH_CHECK(lr_scale.scalar_type() == at::kDouble && lr_scale.numel() == groups &&
                  lr_scale.is_contiguous(),
              op, ": lr_scale must be a contiguous float64 tensor of ", groups, " elements");
  TORCH_CHECK(counter.scalar_type() == at::kLong && counter.numel() == 1, op,
              ": counter must be an int64 tensor of one element");
  TORCH_CHECK(out.scalar_type() == at::kDouble && out.numel() == 2 * groups && out.is_contiguous(),
              op, ": out must be a contiguous float64 tensor of shape [", groups, ", 2]");
  for (const at::Tensor* t : {&program, &lr_scale, &counter, &out}) {
    TORCH_CHECK(t->device() == hparams.device(), op, ": all arguments must be on one device, got ",
                t->device(), " and ", hparams.device());
  }
  const rt::CUDAGuard guard(hparams.device());
  const auto stream = rt::getCurrentCUDAStream(hparams.device().index()).stream();
  check_cuda(op, cuda::launch_eval_schedule(
                     program.numel() > 0 ? program.data_ptr<double>() : nullptr,
                     hparams.data_ptr<double>(), lr_scale.data_ptr<double>(),
                     counter.data_ptr<int64_t>(), groups, out.data_ptr<double>(), stream));
}

namespace {

// The pointers of a checked bucket's tensor i: (param, grad) then `state`; with `masters`
// (master_weights in one pass): (master, grad, 16-bit param) then `state`.
cuda::UpdateTensor update_tensor(const BucketView& view, at::TensorList masters, int64_t i,
                                 std::initializer_list<void*> state, at::TensorList steps,
                                 const int64_t* mt) {
  cuda::UpdateTensor t{};
  int k = 0;
  t.ptr[k++] = masters.empty() ? view.params[i]->data_ptr() : masters[i].data_ptr();
  t.ptr[k++] = view.grads[i]->data_ptr();
  if (!masters.empty()) t.ptr[k++] = view.params[i]->data_ptr();
  for (void* p : state) t.ptr[k++] = p;
  t.numel = view.params[i]->numel();
  t.step = steps[i].data_ptr<float>();
  t.group = static_cast<int32_t>(mt[2 * i]);
  return t;
}

// The SGD launches of a checked bucket (master kernels with `masters`), then the step pass.
void sgd_launch(const char* op, const BucketView& view, at::TensorList masters, at::TensorList bufs,
                at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                const std::optional<at::Tensor>& found_inf) {
  const rt::CUDAGuard guard(hparams.device());
  const Prepared prep = prepare(op, hparams, group_lr, grad_scale, found_inf);
  const int64_t n = static_cast<int64_t>(view.params.size());
  const int64_t* mt = meta.data_ptr<int64_t>();
  std::vector<cuda::UpdateTensor> tensors(n);
  std::vector<uint8_t> has_state(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = mt[2 * i + 1];
    tensors[i] = update_tensor(view, masters, i, {slot >= 0 ? data_or_null(bufs[slot]) : nullptr},
                               steps, mt);
    has_state[i] = slot >= 0 ? 1 : 0;
  }
  const bool master = !masters.empty();
  launch_by_type(
      op, view, tensors, /*adam=*/false, prep.call.arg_layout,
      [&](cuda::ElemType type, const cuda::UpdateTensor* ts, int64_t count) {
        return master ? cuda::launch_sgd_master_update(type, ts, count, prep.call)
                      : cuda::launch_sgd_update(type, ts, count, prep.call);
      },
      master);
  launch_steps(op, steps, meta, has_state, /*sgd=*/true, prep.call);
  if (!master) view.write_back(prep.scale.has_value());
}

// The Adam / AdamW launches of a checked bucket (see sgd_launch).
void adam_launch(const char* op, const BucketView& view, at::TensorList masters,
                 at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                 at::TensorList max_exp_avg_sqs, at::TensorList steps, const at::Tensor& meta,
                 const at::Tensor& hparams, const at::Tensor& group_lr,
                 const std::optional<at::Tensor>& grad_scale,
                 const std::optional<at::Tensor>& found_inf) {
  const rt::CUDAGuard guard(hparams.device());
  const Prepared prep = prepare(op, hparams, group_lr, grad_scale, found_inf);
  const int64_t n = static_cast<int64_t>(view.params.size());
  const int64_t* mt = meta.data_ptr<int64_t>();
  std::vector<cuda::UpdateTensor> tensors(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t slot = mt[2 * i + 1];
    tensors[i] = update_tensor(view, masters, i,
                               {exp_avgs[i].data_ptr(), exp_avg_sqs[i].data_ptr(),
                                slot >= 0 ? data_or_null(max_exp_avg_sqs[slot]) : nullptr},
                               steps, mt);
  }
  const bool master = !masters.empty();
  launch_by_type(
      op, view, tensors, /*adam=*/true, prep.call.arg_layout,
      [&](cuda::ElemType type, const cuda::UpdateTensor* ts, int64_t count) {
        return master ? cuda::launch_adam_master_update(type, ts, count, prep.call)
                      : cuda::launch_adam_update(type, ts, count, prep.call);
      },
      master);
  launch_steps(op, steps, meta, std::vector<uint8_t>(n, 1), /*sgd=*/false, prep.call);
  if (!master) view.write_back(prep.scale.has_value());
}

}  // namespace

void sgd_update_cuda(at::TensorList params, at::TensorList grads, at::TensorList bufs,
                     at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                     const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                     const std::optional<at::Tensor>& found_inf) {
  const char* op = "sgd_update_";
  const BucketView view =
      check_bucket(op, params, grads, {{"momentum_buffers", bufs}}, steps, meta, hparams, group_lr);
  sgd_launch(op, view, {}, bufs, steps, meta, hparams, group_lr, grad_scale, found_inf);
}

void adam_update_cuda(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                      at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                      at::TensorList steps, const at::Tensor& meta, const at::Tensor& hparams,
                      const at::Tensor& group_lr, const std::optional<at::Tensor>& grad_scale,
                      const std::optional<at::Tensor>& found_inf) {
  const char* op = "adam_update_";
  const BucketView view = check_bucket(
      op, params, grads,
      {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}},
      steps, meta, hparams, group_lr);
  adam_launch(op, view, {}, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta, hparams, group_lr,
              grad_scale, found_inf);
}

// master_weights in one pass: masters (float32) stepped with the 16-bit params' grads, the
// rounded masters written to the params (see the CPU op, csrc/cpu/update_cpu.cpp).
void sgd_update_master_cuda(at::TensorList masters, at::TensorList grads, at::TensorList bufs,
                            at::TensorList steps, at::TensorList params, const at::Tensor& meta,
                            const at::Tensor& hparams, const at::Tensor& group_lr,
                            const std::optional<at::Tensor>& grad_scale,
                            const std::optional<at::Tensor>& found_inf) {
  const char* op = "sgd_update_master_";
  const BucketView view = check_master(op, masters, params, grads, {{"momentum_buffers", bufs}},
                                       steps, meta, hparams, group_lr);
  sgd_launch(op, view, masters, bufs, steps, meta, hparams, group_lr, grad_scale, found_inf);
}

void adam_update_master_cuda(at::TensorList masters, at::TensorList grads, at::TensorList exp_avgs,
                             at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                             at::TensorList steps, at::TensorList params, const at::Tensor& meta,
                             const at::Tensor& hparams, const at::Tensor& group_lr,
                             const std::optional<at::Tensor>& grad_scale,
                             const std::optional<at::Tensor>& found_inf) {
  const char* op = "adam_update_master_";
  const BucketView view = check_master(
      op, masters, params, grads,
      {{"exp_avgs", exp_avgs}, {"exp_avg_sqs", exp_avg_sqs}, {"max_exp_avg_sqs", max_exp_avg_sqs}},
      steps, meta, hparams, group_lr);
  adam_launch(op, view, masters, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, meta, hparams,
              group_lr, grad_scale, found_inf);
}

#if !defined(FUSEDLR_FAKE_CUDA)
TORCH_LIBRARY_IMPL(fusedlr, CUDA, m) {
  m.impl("sgd_update_master_", &sgd_update_master_cuda);
  m.impl("adam_update_master_", &adam_update_master_cuda);
  m.impl("eval_schedule_", &eval_schedule_cuda);
  m.impl("sgd_update_", &sgd_update_cuda);
  m.impl("adam_update_", &adam_update_cuda);
}
#endif

FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr
