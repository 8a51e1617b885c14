// ElemTraits of the 16-bit param types for the CPU emulator of the CUDA block
// bodies: c10::Half / c10::BFloat16 convert with round-to-nearest-even, as
// __float2half_rn / __float2bfloat16_rn do on the device.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "multi_tensor.h"

namespace fusedlr {
namespace mt {

template <>
struct ElemTraits<c10::Half> {
  using Opmath = float;
  static inline float load(c10::Half x) { return static_cast<float>(x); }
  static inline c10::Half store(float x) { return c10::Half(x); }
};
template <>
struct ElemTraits<c10::BFloat16> {
  using Opmath = float;
  static inline float load(c10::BFloat16 x) { return static_cast<float>(x); }
  static inline c10::BFloat16 store(float x) { return c10::BFloat16(x); }
};

}  // namespace mt
}  // namespace fusedlr
