// The kernels' element type of a torch dtype (launchers only: includes torch headers).
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include "cuda/launch.h"

namespace fusedlr {
// In the fake-runtime build's inline namespace too: its return type differs there.
FUSEDLR_CUDA_ABI_BEGIN

inline cuda::ElemType elem_type_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::ElemType::kFloat;
    case at::kDouble:
      return cuda::ElemType::kDouble;
    case at::kHalf:
      return cuda::ElemType::kHalf;
    case at::kBFloat16:
      return cuda::ElemType::kBFloat16;
    default:
      TORCH_CHECK(false, "fusedlr: unsupported CUDA param dtype ", t);
  }
}

FUSEDLR_CUDA_ABI_END
}  // namespace fusedlr
