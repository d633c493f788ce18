// The launch shape launch_kernel (runtime.h) takes: shared with the CPU emulation of the runtime
// (tests/cuda_emulation/cuda_emulation.h, which defines dim3 itself before including this).
#pragma once

#include <cstddef>

#ifndef STYLEGAN_OPS_EMULATE_CUDA
#include <cuda_runtime.h>  // dim3
#endif

namespace stylegan_ops {

// A launch's threads per block and dynamic shared memory (read by dynamic_shared_memory()).
struct BlockShape {
  dim3 threads;
  size_t shared_bytes = 0;
  BlockShape(dim3 threads_, size_t shared_bytes_ = 0) : threads(threads_), shared_bytes(shared_bytes_) {}
  BlockShape(unsigned threads_, size_t shared_bytes_ = 0) : threads(threads_), shared_bytes(shared_bytes_) {}
};

}  // namespace stylegan_ops
