// The Python module fusedlr._C: build information and EagerBucket (the eager
// step's C++ side). The optimizer ops are reached through torch.ops.fusedlr.*
// (registered in ops.cpp and the backends).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "cpu/kernel_table.h"
#include "eager_bucket.h"

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
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusedlr native extension: build information and the eager bucket step";
  m.def("cuda_compiled", &cuda_compiled, "Whether the CUDA kernels were compiled in.");
  m.def("cpu_openmp", &cpu_openmp, "Whether the CPU kernels run in parallel (OpenMP build).");
  m.def("cuda_archs", &cuda_archs,
        "The CUDA code compiled in, as nvcc names it: SASS 'sm_XY' and PTX 'compute_XY' "
        "(empty on a CPU-only build).");
  m.def(
      "cpu_isa", [] { return std::string(fusedlr::cpu_kernels().isa); },
      "The vector ISA of the CPU kernels chosen on this machine.");
  fusedlr::bind_eager_bucket(m);
}
