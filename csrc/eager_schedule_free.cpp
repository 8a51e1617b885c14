// fusedlr._C.EagerScheduleFree: the eager schedule-free step of one device, grads read in C++.
//
// As for EagerBucket (eager_bucket.cpp): through torch.ops, a step over N tensors converts four
// Python lists of N tensors to IValues and back, which is most of a step of many small tensors.
// This object holds the params, z and exp_avg_sq lists and the group index tensor (built once
// per layout by schedule_free.py), reads each param's .grad itself and calls the same
// registered fusedlr::schedule_free_update_ through the C++ dispatcher, which checks every
// argument before it writes. torch.compile'd code keeps using torch.ops.
#include "eager_schedule_free.h"

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/python.h>

#include <optional>
#include <vector>

namespace fusedlr {
namespace {

namespace py = pybind11;

using UpdateOp = void(at::TensorList, at::TensorList, at::TensorList, at::TensorList,
                      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&);

// Steps above this many elements release the GIL while the kernels run.
constexpr int64_t kReleaseGilAbove = int64_t{1} << 20;

class EagerScheduleFree {
 public:
  EagerScheduleFree(std::vector<at::Tensor> params, std::vector<at::Tensor> zs,
                    std::vector<at::Tensor> exp_avg_sqs, at::Tensor groups)
      : params_(std::move(params)),
        zs_(std::move(zs)),
        vs_(std::move(exp_avg_sqs)),
        groups_(std::move(groups)) {
    TORCH_CHECK(zs_.size() == params_.size(), "EagerScheduleFree: ", params_.size(), " params but ",
                zs_.size(), " zs");
    TORCH_CHECK(vs_.empty() || vs_.size() == params_.size(), "EagerScheduleFree: ", params_.size(),
                " params but ", vs_.size(), " exp_avg_sqs");
    for (const at::Tensor& p : params_) numel_ += p.numel();
    grads_.reserve(params_.size());
  }

  // One step: reads every param's grad and runs the update op. Returns false, having done
  // nothing, when a param has no grad (the caller takes the general path).
  bool step(const at::Tensor& program, const at::Tensor& hparams, const at::Tensor& state) {
    struct Drop {  // a grad freed by zero_grad must not be kept alive here
      std::vector<at::Tensor>& v;
      ~Drop() { v.clear(); }
    } drop{grads_};
    for (const at::Tensor& p : params_) {
      const at::Tensor& g = p.grad();
      if (!g.defined()) return false;
      grads_.push_back(g);
    }
    std::optional<py::gil_scoped_release> no_gil;
    if (numel_ > kReleaseGilAbove) no_gil.emplace();
    // No autograd formula; it mutates leaves under no_grad, as torch.optim's fused ops.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fusedlr::schedule_free_update_", "")
                               .typed<UpdateOp>();
    op.call(params_, grads_, zs_, vs_, groups_, program, hparams, state);
    return true;
  }

  int64_t size() const { return static_cast<int64_t>(params_.size()); }

 private:
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> zs_;
  std::vector<at::Tensor> vs_;
  at::Tensor groups_;
  std::vector<at::Tensor> grads_;
  int64_t numel_ = 0;
};

}  // namespace

void bind_eager_schedule_free(pybind11::module_& m) {
  py::class_<EagerScheduleFree>(m, "EagerScheduleFree",
                                "The eager schedule-free step of one device, grads read in C++.")
      .def(py::init<std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>,
                    at::Tensor>(),
           py::arg("params"), py::arg("zs"), py::arg("exp_avg_sqs"), py::arg("groups"))
      .def("step", &EagerScheduleFree::step, py::arg("program"), py::arg("hparams"),
           py::arg("state"),
           "Reads every param's grad and runs schedule_free_update_; False (nothing done) when "
           "a param has no grad.")
      .def("__len__", &EagerScheduleFree::size);
}

}  // namespace fusedlr
