// Python binding of the C++ eager bucket step (eager_bucket.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace fusedlr {
void bind_eager_bucket(pybind11::module_& m);
}  // namespace fusedlr
