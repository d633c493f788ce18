// The CUDA runtime calls of the kernel files, in one place. Built with STYLEGAN_OPS_EMULATE_CUDA,
// tests/cuda_emulation/cuda_emulation.h provides the same names on CPU threads instead, so CI
// runs every index of the kernels without a GPU.
#pragma once

#ifndef STYLEGAN_OPS_EMULATE_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace stylegan_ops {

using DeviceGuard = c10::cuda::CUDAGuard;

inline int multiprocessor_count(const at::Tensor& t) {
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, t.get_device()));
  return count;
}

// kernel<<<grid, block>>>(args...) on the current stream, checked.
template <typename Kernel, typename... Args>
void launch_kernel(Kernel kernel, dim3 grid, dim3 block, Args... args) {
  kernel<<<grid, block, 0, c10::cuda::getCurrentCUDAStream()>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace stylegan_ops
#endif
