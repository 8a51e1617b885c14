// csrc/cuda/kernels.cu and schedule_free_kernels.cu compiled by the host compiler against the fake
// CUDA runtime (cuda/fake_runtime.h): every FUSEDLR_LAUNCH is recorded and runs the __global__
// function on the CPU. __half / __nv_bfloat16 are the CUDA toolkit's host-side types. The block
// bodies take their host (scalar) load/store path here; the device's vector branch is tested on the
// host by tests/cpp/vector_test.cpp (the two cannot share one library: same inline functions).
#define FUSEDLR_FAKE_CUDA 1
#include "cuda/kernels.cu"
#include "cuda/schedule_free_kernels.cu"
