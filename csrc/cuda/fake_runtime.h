// A fake CUDA runtime for the CPU: what FUSEDLR_LAUNCH (cuda/launch_point.h) becomes when
// kernels.cu is compiled by the host compiler with FUSEDLR_FAKE_CUDA (csrc/fake_cuda/).
//
// fake_cuda::launch records every launch (kernel name, grid, block, dynamic shared memory,
// stream, and the bytes of the kernel's parameter buffer laid out as CUDA does), rejects what the
// runtime would reject (an empty or oversized grid or block, more than 1024 threads, shared
// memory, parameters past the 32 KB limit, or the limit the test set) with the runtime's error
// code, returns an injected error at a chosen launch, and otherwise runs the __global__ function
// itself on the CPU over every (block, thread), blocks and threads in reverse order, with blockIdx
// / threadIdx / blockDim / gridDim set. Nothing here calls the CUDA runtime library: only the
// toolkit's type headers (driver_types.h, vector_types.h) are used.
#pragma once

#include <driver_types.h>
#include <vector_types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
#ifndef __grid_constant__
#define __grid_constant__
#endif

namespace fusedlr {
namespace fake_cuda {

// Kernel parameters: CUDA 12.1+ on Volta and newer takes up to 32764 bytes, older toolkits,
// drivers and devices 4096 (State::max_param_bytes).
constexpr size_t kMaxParamBytes = 32764;

struct LaunchRecord {
  std::string kernel;
  dim3 grid, block;
  size_t smem;
  void* stream;
  size_t param_bytes;
  int result;  // the cudaError_t the launch returned
};

struct State {
  std::vector<LaunchRecord> launches;
  int64_t fail_at = -1;  // index (in `launches`) of a launch that returns fail_code
  int fail_code = 0;
  void* current_stream = nullptr;    // what the fake getCurrentCUDAStream returns
  int64_t guards = 0;                // device guards taken
  int attribute_error = 0;           // what kernel-attribute queries return from...
  int64_t attribute_fail_at = 0;     // ...this query index on (0-based)
  int max_threads_per_block = 1024;  // the kernels' maxThreadsPerBlock attribute
  int64_t attribute_queries = 0;
  int64_t errors_cleared = 0;               // cudaGetLastError calls that reset an error
  size_t max_param_bytes = kMaxParamBytes;  // the parameter limit launches are checked against
  bool large_args = true;                   // what the device query of the 32 KB layout answers
};

inline State& state() {
  static State s;
  return s;
}

// The index variables of the running (block, thread).
inline thread_local uint3 blockIdx;
inline thread_local uint3 threadIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

// The size of a kernel's parameter buffer: each parameter at its own alignment, in order.
template <typename... P>
constexpr size_t param_bytes() {
  size_t off = 0;
  ((off = (off + alignof(P) - 1) / alignof(P) * alignof(P) + sizeof(P)), ...);
  return off;
}

inline const char* error_string(int code) {
  switch (code) {
    case cudaSuccess:
      return "no error (fake CUDA runtime)";
    case cudaErrorInvalidValue:
      return "invalid argument (fake CUDA runtime)";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument (fake CUDA runtime)";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch (fake CUDA runtime)";
    default:
      return "injected error (fake CUDA runtime)";
  }
}

inline int check_config(const dim3& grid, const dim3& block, size_t smem, size_t params,
                        size_t max_params) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 || block.z > 64 ||
      grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    return cudaErrorInvalidConfiguration;
  }
  if (smem > 48 * 1024 || params > max_params) return cudaErrorInvalidValue;
  return cudaSuccess;
}

// cudaFuncGetAttributes: maxThreadsPerBlock from the state, or the state's injected error.
template <typename... P>
cudaError_t func_attributes(cudaFuncAttributes* attr, void (*)(P...)) {
  State& s = state();
  if (s.attribute_queries++ >= s.attribute_fail_at && s.attribute_error != cudaSuccess) {
    return static_cast<cudaError_t>(s.attribute_error);
  }
  *attr = cudaFuncAttributes{};
  attr->maxThreadsPerBlock = s.max_threads_per_block;
  return cudaSuccess;
}

// cudaGetLastError used to clear a reported error (nothing is sticky here).
inline cudaError_t clear_error() {
  ++state().errors_cleared;
  return cudaSuccess;
}

template <typename... P, typename... A>
cudaError_t launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
  static_assert((std::is_trivially_copyable<std::decay_t<P>>::value && ...),
                "kernel parameters must be trivially copyable");
  State& s = state();
  const size_t bytes = param_bytes<std::decay_t<P>...>();
  const int64_t index = static_cast<int64_t>(s.launches.size());
  int result =
      index == s.fail_at ? s.fail_code : check_config(grid, block, smem, bytes, s.max_param_bytes);
  s.launches.push_back(LaunchRecord{name, grid, block, smem, stream, bytes, result});
  if (result != cudaSuccess) return static_cast<cudaError_t>(result);
  // The arguments, converted to the parameter types, as the launch copies them.
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = grid.z; bz-- > 0;) {
    for (unsigned by = grid.y; by-- > 0;) {
      for (unsigned bx = grid.x; bx-- > 0;) {
        blockIdx = uint3{bx, by, bz};
        for (unsigned tz = block.z; tz-- > 0;) {
          for (unsigned ty = block.y; ty-- > 0;) {
            for (unsigned tx = block.x; tx-- > 0;) {
              threadIdx = uint3{tx, ty, tz};
              std::apply(kernel, params);
            }
          }
        }
      }
    }
  }
  return cudaSuccess;
}

}  // namespace fake_cuda

// The kernels of csrc/cuda/*.cu name blockIdx etc. unqualified inside namespace fusedlr.
using fake_cuda::blockDim;
using fake_cuda::blockIdx;
using fake_cuda::gridDim;
using fake_cuda::threadIdx;

}  // namespace fusedlr
