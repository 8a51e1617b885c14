// Portability macros for code compiled by both g++ (CPU kernels, host evaluation) and nvcc.
#pragma once

#if defined(__CUDACC__)
#define FUSEDLR_HD __host__ __device__
#define FUSEDLR_INLINE __host__ __device__ __forceinline__
#else
#define FUSEDLR_HD
// always_inline: no out-of-line copy is emitted, so a helper instantiated in an
// AVX-512 translation unit (csrc/cpu/isa_*.cpp) can never be the weak definition
// that baseline code links to (tools/check_isa_leaks.py checks the built library).
#define FUSEDLR_INLINE inline __attribute__((always_inline))
#endif
