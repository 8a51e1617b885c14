// ElemTraits of the 16-bit CUDA param types (__half, __nv_bfloat16) for the
// block bodies of multi_tensor.h: opmath float, round-to-nearest-even back.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "multi_tensor.h"

namespace fusedlr {
namespace mt {

// 16-bit params: opmath float, round-to-nearest-even on the way back.
template <>
struct ElemTraits<__half> {
  using Opmath = float;
  static __device__ __forceinline__ float load(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half store(float x) { return __float2half_rn(x); }
};
template <>
struct ElemTraits<__nv_bfloat16> {
  using Opmath = float;
  static __device__ __forceinline__ float load(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 store(float x) { return __float2bfloat16_rn(x); }
};

}  // namespace mt
}  // namespace fusedlr
