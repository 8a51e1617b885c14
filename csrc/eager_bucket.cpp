// fusedlr._C.EagerBucket: the eager step of one (device, dtype) bucket, with the
// per-tensor work done in C++.
//
// Through torch.ops, a step over N tensors converts 5-6 Python lists of N
// tensors to IValues and back, and every temporary reference the dispatcher
// drops can decref the Python object with the GIL re-taken: ~1.5-3 us per
// tensor, most of the step for small tensors. An EagerBucket holds the params,
// their state tensors and steps (built once per layout by optim.py), reads
// each param's .grad itself and calls the same registered op through the C++
// dispatcher, so the Python cost of a step is O(1) in the tensor count.
// torch.compile'd code keeps using torch.ops (dynamo cannot see into this).
#include "eager_bucket.h"

#include <ATen/Functions.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/python.h>

#include <optional>
#include <string>
#include <vector>

namespace fusedlr {
namespace {

namespace py = pybind11;

using OptTensor = std::optional<at::Tensor>;
using SgdOp = void(at::TensorList, at::TensorList, at::TensorList, at::TensorList,
                   const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
                   const OptTensor&);
using EvalOp = void(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                    const at::Tensor&);
using NormOp = void(at::TensorList, double, const at::Tensor&);
using SgdMasterOp = void(at::TensorList, at::TensorList, at::TensorList, at::TensorList,
                         at::TensorList, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const OptTensor&, const OptTensor&);
using AdamMasterOp = void(at::TensorList, at::TensorList, at::TensorList, at::TensorList,
                          at::TensorList, at::TensorList, at::TensorList, const at::Tensor&,
                          const at::Tensor&, const at::Tensor&, const OptTensor&, const OptTensor&);
using AdamOp = void(at::TensorList, at::TensorList, at::TensorList, at::TensorList, at::TensorList,
                    at::TensorList, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                    const OptTensor&, const OptTensor&);

// Steps above this many elements release the GIL while the kernels run.
constexpr int64_t kReleaseGilAbove = int64_t{1} << 20;

class EagerBucket {
 public:
  // With `sources` (master_weights in one pass): params are the float32 masters, sources the
  // 16-bit params whose grads are read and which receive the rounded masters.
  EagerBucket(const std::string& algorithm, std::vector<at::Tensor> params,
              std::vector<std::vector<at::Tensor>> states, std::vector<at::Tensor> steps,
              at::Tensor meta, std::vector<at::Tensor> sources)
      : params_(std::move(params)),
        states_(std::move(states)),
        steps_(std::move(steps)),
        meta_(std::move(meta)),
        sources_(std::move(sources)) {
    TORCH_CHECK(sources_.empty() || sources_.size() == params_.size(),
                "EagerBucket: ", params_.size(), " params but ", sources_.size(), " sources");
    TORCH_CHECK(algorithm == "sgd" || algorithm == "adam",
                "EagerBucket: algorithm must be 'sgd' or 'adam', got '", algorithm, "'");
    sgd_ = algorithm == "sgd";
    TORCH_CHECK(states_.size() == (sgd_ ? 1u : 3u), "EagerBucket: ", algorithm, " takes ",
                sgd_ ? 1 : 3, " state lists, got ", states_.size());
    TORCH_CHECK(steps_.size() == params_.size(), "EagerBucket: ", params_.size(), " params but ",
                steps_.size(), " steps");
    for (const at::Tensor& p : params_) numel_ += p.numel();
    grads_.reserve(params_.size());
  }

  // Reads every param's grad. Returns false (keeping nothing) when one has none.
  // With `check`, raises when a grad does not match its param (needed when
  // several buckets must all be valid before any is written; a single bucket's
  // op checks its grads itself before writing).
  bool gather(bool check) {
    grads_.clear();
    const std::vector<at::Tensor>& with_grads = sources_.empty() ? params_ : sources_;
    for (size_t i = 0; i < with_grads.size(); ++i) {
      const at::Tensor& p = with_grads[i];
      const at::Tensor& g = p.grad();
      if (!g.defined()) {
        grads_.clear();
        return false;
      }
      if (!check) {
        grads_.push_back(g);
        continue;
      }
      if (g.layout() != at::kStrided) {
        grads_.clear();
        TORCH_CHECK(false, "params[", i, "]: fusedlr does not support sparse gradients");
      }
      if (g.sizes() != p.sizes() || g.scalar_type() != p.scalar_type() ||
          g.device() != p.device()) {
        grads_.clear();
        TORCH_CHECK(false, "params[", i, "]: grad is ", g.scalar_type(), " ", g.sizes(), " on ",
                    g.device(), " but the param is ", p.scalar_type(), " ", p.sizes(), " on ",
                    p.device());
      }
      grads_.push_back(g);
    }
    return true;
  }

  // Runs the update op over the gathered grads, then drops them (a grad freed
  // by zero_grad must not be kept alive here).
  void run(const at::Tensor& hparams, const at::Tensor& group_lr, const OptTensor& grad_scale,
           const OptTensor& found_inf) {
    TORCH_CHECK(grads_.size() == params_.size(), "EagerBucket.run: call gather() first");
    struct Drop {
      std::vector<at::Tensor>& v;
      ~Drop() { v.clear(); }
    } drop{grads_};
    std::optional<py::gil_scoped_release> no_gil;
    if (numel_ > kReleaseGilAbove) no_gil.emplace();
    // The op has no autograd formula and mutates only leaves under no_grad (as
    // torch.optim's fused ops): dispatch straight to the backend kernel.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    if (!sources_.empty()) {
      run_master(hparams, group_lr, grad_scale, found_inf);
    } else if (sgd_) {
      static const auto op =
          c10::Dispatcher::singleton().findSchemaOrThrow("fusedlr::sgd_update_", "").typed<SgdOp>();
      op.call(params_, grads_, states_[0], steps_, meta_, hparams, group_lr, grad_scale, found_inf);
    } else {
      static const auto op = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("fusedlr::adam_update_", "")
                                 .typed<AdamOp>();
      op.call(params_, grads_, states_[0], states_[1], states_[2], steps_, meta_, hparams, group_lr,
              grad_scale, found_inf);
    }
  }

  // The norm of every gathered grad (max_grad_norm's norm pass, fusedlr/_clip.py): on the CPU
  // fusedlr::grad_norms_ into `out` (float64), elsewhere aten::_foreach_norm into `out_views`
  // (the elements of a buffer in the grads' dtype). Raises, dropping the grads, on failure.
  void grad_norms(double ord, const at::Tensor& out, const std::vector<at::Tensor>& out_views) {
    TORCH_CHECK(grads_.size() == params_.size(), "EagerBucket.grad_norms: call gather() first");
    try {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      if (!params_.empty() && params_[0].device().is_cpu()) {
        static const auto op = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("fusedlr::grad_norms_", "")
                                   .typed<NormOp>();
        op.call(grads_, ord, out);
      } else {
        at::_foreach_norm_out(out_views, grads_, ord, std::nullopt);
      }
    } catch (...) {
      grads_.clear();
      throw;
    }
  }

  // master_weights in one pass: fusedlr::*_update_master_ (masters, 16-bit grads and params).
  void run_master(const at::Tensor& hparams, const at::Tensor& group_lr,
                  const OptTensor& grad_scale, const OptTensor& found_inf) {
    if (sgd_) {
      static const auto op = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("fusedlr::sgd_update_master_", "")
                                 .typed<SgdMasterOp>();
      op.call(params_, grads_, states_[0], steps_, sources_, meta_, hparams, group_lr, grad_scale,
              found_inf);
    } else {
      static const auto op = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("fusedlr::adam_update_master_", "")
                                 .typed<AdamMasterOp>();
      op.call(params_, grads_, states_[0], states_[1], states_[2], steps_, sources_, meta_, hparams,
              group_lr, grad_scale, found_inf);
    }
  }

  // Forgets gathered grads without running (another bucket had a param without a grad).
  void drop() { grads_.clear(); }

  int64_t size() const { return static_cast<int64_t>(params_.size()); }

 private:
  std::vector<at::Tensor> params_;
  std::vector<std::vector<at::Tensor>> states_;
  std::vector<at::Tensor> steps_;
  at::Tensor meta_;
  std::vector<at::Tensor> sources_;  // master_weights in one pass: the 16-bit params
  std::vector<at::Tensor> grads_;
  int64_t numel_ = 0;
  bool sgd_ = false;
};

// One device's whole eager step: the schedule op, every bucket's update, then
// counter += increment (1, or 1 - found_inf with skip_schedule_on_inf). One
// Python call instead of a torch.ops call, a pybind call per bucket and an add_.
void eager_device_step(const at::Tensor& program, const at::Tensor& hparams,
                       const at::Tensor& lr_scale, const at::Tensor& counter,
                       const at::Tensor& group_lr, const at::Tensor& increment,
                       const std::vector<EagerBucket*>& buckets, const OptTensor& grad_scale,
                       const OptTensor& found_inf) {
  {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    static const auto eval = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("fusedlr::eval_schedule_", "")
                                 .typed<EvalOp>();
    eval.call(program, hparams, lr_scale, counter, group_lr);
  }
  try {
    for (EagerBucket* b : buckets) b->run(hparams, group_lr, grad_scale, found_inf);
  } catch (...) {
    for (EagerBucket* b : buckets) b->drop();  // keep no grad alive past a failed step
    throw;
  }
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const_cast<at::Tensor&>(counter).add_(increment);
}

}  // namespace

void bind_eager_bucket(pybind11::module_& m) {
  py::class_<EagerBucket>(m, "EagerBucket",
                          "The eager step of one (device, dtype) bucket, grads read in C++.")
      .def(py::init<const std::string&, std::vector<at::Tensor>,
                    std::vector<std::vector<at::Tensor>>, std::vector<at::Tensor>, at::Tensor,
                    std::vector<at::Tensor>>(),
           py::arg("algorithm"), py::arg("params"), py::arg("states"), py::arg("steps"),
           py::arg("meta"), py::arg("sources") = std::vector<at::Tensor>{})
      .def("gather", &EagerBucket::gather, py::arg("check") = true,
           "Reads every param's grad; False when one has none. With check, raises on a grad "
           "that does not match its param.")
      .def("run", &EagerBucket::run, py::arg("hparams"), py::arg("group_lr"), py::arg("grad_scale"),
           py::arg("found_inf"), "Runs the update op over the gathered grads, then drops them.")
      .def("grad_norms", &EagerBucket::grad_norms, py::arg("ord"), py::arg("out"),
           py::arg("out_views"),
           "The norm of every gathered grad: into out (float64, CPU) or out_views (elsewhere).")
      .def("drop", &EagerBucket::drop, "Forgets the gathered grads without running.")
      .def("__len__", &EagerBucket::size);
  m.def("eager_device_step", &eager_device_step, py::arg("program"), py::arg("hparams"),
        py::arg("lr_scale"), py::arg("counter"), py::arg("group_lr"), py::arg("increment"),
        py::arg("buckets"), py::arg("grad_scale"), py::arg("found_inf"),
        "One device's eager step: eval_schedule_, each bucket's run(), counter += increment.");
}

}  // namespace fusedlr
