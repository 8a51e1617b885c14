// csrc/cuda/kernels.cu and schedule_free_kernels.cu compiled by the host compiler against the fake
// CUDA runtime (cuda/fake_runtime.h): every FUSEDLR_LAUNCH is recorded and runs the __global__
// function on the CPU. __half / __nv_bfloat16 are the CUDA toolkit's host-side types, and the
// block bodies take the device's vector branch of load_vec / store_vec (FUSEDLR_HOST_VECTOR_PATH:
// under tools/sanitize.sh, UBSan checks the alignment of every vector access the launchers allow).
#define FUSEDLR_FAKE_CUDA 1
#define FUSEDLR_HOST_VECTOR_PATH 1
#include "cuda/kernels.cu"
#include "cuda/schedule_free_kernels.cu"
