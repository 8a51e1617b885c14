// The Python module fusedlr._C: build information and EagerBucket (the eager
// step's C++ side). The optimizer ops are reached through torch.ops.fusedlr.*
// (registered in ops.cpp and the backends).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/kernel_table.h"
#include "eager_bucket.h"
#include "eager_schedule_free.h"
#ifdef FUSEDLR_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>

#include "cuda/launch.h"
#endif

// setup.py defines it: the nvcc targets compiled, comma-separated ("sm_80,sm_90,compute_90").
#ifndef FUSEDLR_CUDA_ARCHS
#define FUSEDLR_CUDA_ARCHS ""
#endif

namespace {
bool cpu_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

std::vector<std::string> cuda_archs() {
  std::vector<std::string> archs;
  std::string list = FUSEDLR_CUDA_ARCHS;
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) archs.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return archs;
}

bool cuda_compiled() {
#ifdef FUSEDLR_WITH_CUDA
  return true;
#else
  return false;
#endif
}

// The kernel-argument limit the update launches use on CUDA device `index`: 32764 (the 32 KB
// layout) or 4096 (the classic one).
int64_t cuda_kernel_arg_bytes(int64_t index) {
#ifdef FUSEDLR_WITH_CUDA
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
  return fusedlr::cuda::kernel_arg_layout() == 1 ? 32764 : 4096;
#else
  (void)index;
  throw std::runtime_error("cuda_kernel_arg_bytes: fusedlr was built without CUDA kernels");
#endif
}

bool cuda_large_args_compiled() {
#ifdef FUSEDLR_WITH_CUDA
  return fusedlr::cuda::large_args_compiled();
#else
  return false;
#endif
}
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusedlr native extension: build information and the eager bucket step";
  m.def("cuda_compiled", &cuda_compiled, "Whether the CUDA kernels were compiled in.");
  m.def("cpu_openmp", &cpu_openmp, "Whether the CPU kernels run in parallel (OpenMP build).");
  m.def("cuda_archs", &cuda_archs,
        "The CUDA code compiled in, as nvcc names it: SASS 'sm_XY' and PTX 'compute_XY' "
        "(empty on a CPU-only build).");
  m.def("cuda_kernel_arg_bytes", &cuda_kernel_arg_bytes, pybind11::arg("device_index"),
        "The kernel-argument limit of the update launches on that CUDA device: 32764 (32 KB "
        "layout: CUDA 12.1+ build, compute capability >= 7.0, driver >= 12.1) or 4096.");
  m.def("cuda_large_args_compiled", &cuda_large_args_compiled,
        "Whether the 32 KB kernel-argument layout was compiled in (toolkit CUDA 12.1+).");
  m.def(
      "cpu_isa", [] { return std::string(fusedlr::cpu_kernels().isa); },
      "The vector ISA of the CPU kernels chosen on this machine.");
  m.def("cpu_prefetch_distance", &fusedlr::cpu_prefetch_distance,
        "The CPU update kernels' software prefetch distance, in elements (0: off).");
  m.def(
      "set_cpu_prefetch_distance",
      [](int64_t elements) {
        if (elements < 0 || elements > fusedlr::kMaxPrefetch) {
          throw std::invalid_argument("set_cpu_prefetch_distance: elements must be in [0, " +
                                      std::to_string(fusedlr::kMaxPrefetch) + "], got " +
                                      std::to_string(elements));
        }
        fusedlr::set_cpu_prefetch_distance(elements);
      },
      pybind11::arg("elements"),
      "Sets the CPU update kernels' software prefetch distance, in elements (0: off).");
  m.def(
      "cpu_prefetch_limit", [] { return fusedlr::kMaxPrefetch; },
      "The largest prefetch distance set_cpu_prefetch_distance takes.");
  fusedlr::bind_eager_bucket(m);
  fusedlr::bind_eager_schedule_free(m);
}
