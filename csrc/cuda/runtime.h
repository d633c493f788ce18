// The CUDA runtime calls of the kernel files, in one place. Built with STYLEGAN_OPS_EMULATE_CUDA,
// tests/cuda_emulation/cuda_emulation.h provides the same names on CPU threads instead, so CI
// runs every index of the kernels without a GPU.
#pragma once

#ifndef STYLEGAN_OPS_EMULATE_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "block_shape.h"

namespace stylegan_ops {

using DeviceGuard = c10::cuda::CUDAGuard;

inline int multiprocessor_count(const at::Tensor& t) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, t.get_device()));
  return count;
}

// kernel<<<grid, block.threads, block.shared_bytes>>>(args...) on the current stream, checked.
// Past 48 KiB a kernel must opt in to its dynamic shared memory, as far as the device allows.
template <typename Kernel, typename... Args>
void launch_kernel(Kernel kernel, dim3 grid, BlockShape block, Args... args) {
  if (block.shared_bytes > 48 * 1024) {
    int device = 0, allowed = 0;
    C10_CUDA_CHECK(cudaGetDevice(&device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&allowed, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    TORCH_CHECK(block.shared_bytes <= size_t(allowed), "stylegan_ops: a CUDA kernel needs ", block.shared_bytes,
                " bytes of shared memory per block, and this device allows ", allowed,
                " (stylegan_ops' CUDA kernels are made for compute capability 8.0 and newer)");
    C10_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(block.shared_bytes)));
  }
  kernel<<<grid, block.threads, block.shared_bytes, c10::cuda::getCurrentCUDAStream()>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The block's dynamic shared memory, block.shared_bytes of launch_kernel, 128-byte aligned.
__device__ inline unsigned char* dynamic_shared_memory() {
  extern __shared__ __align__(128) unsigned char bytes[];
  return bytes;
}

}  // namespace stylegan_ops
#endif
