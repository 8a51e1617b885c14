// Python binding of the C++ eager schedule-free step (eager_schedule_free.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace fusedlr {
void bind_eager_schedule_free(pybind11::module_& m);
}  // namespace fusedlr
