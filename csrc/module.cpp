// The Python module fusedlr._C: build information and EagerBucket (the eager
// step's C++ side). The optimizer ops are reached through torch.ops.fusedlr.*
// (registered in ops.cpp and the backends).
#include <pybind11/pybind11.h>

#include <string>

#include "cpu/kernel_table.h"
#include "eager_bucket.h"

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
  m.def(
      "cuda_archs", [] { return std::string(FUSEDLR_CUDA_ARCHS); },
      "The CUDA architectures the kernels were compiled for.");
  m.def(
      "cpu_isa", [] { return std::string(fusedlr::cpu_kernels().isa); },
      "The vector ISA of the CPU kernels chosen on this machine.");
  fusedlr::bind_eager_bucket(m);
}
