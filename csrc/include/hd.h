// Portability macros for code compiled by both g++ (CPU kernels, host evaluation) and nvcc.
#pragma once

#if defined(__CUDACC__)
#define FUSEDLR_HD __host__ __device__
#define FUSEDLR_INLINE __host__ __device__ __forceinline__
#else
#define FUSEDLR_HD
#define FUSEDLR_INLINE inline
#endif
