// cuda_kernel_image_error (kernel_image.h): asks the CUDA runtime for a kernel's attributes on the
// device, which loads the kernel's module there, as a launch would.
#include "kernel_image.h"

#include <cuda_runtime_api.h>

namespace stylegan_ops {
namespace {

// Any kernel of the build serves: setup.py compiles every .cu file for the same
// TORCH_CUDA_ARCH_LIST, so each holds code for the same architectures.
__global__ void probe_kernel() {}

}  // namespace

std::string cuda_kernel_image_error(int device) {
  int current = 0;
  cudaError_t status = cudaGetDevice(&current);
  if (status == cudaSuccess) status = cudaSetDevice(device);
  if (status == cudaSuccess) {
    cudaFuncAttributes attributes;
    status = cudaFuncGetAttributes(&attributes, probe_kernel);
    cudaSetDevice(current);
  }
  // A failed runtime call also sets the thread's last error, which the next launch check
  // (C10_CUDA_KERNEL_LAUNCH_CHECK, of whichever backend runs instead) would report as its own.
  cudaGetLastError();
  return status == cudaSuccess ? std::string() : std::string(cudaGetErrorString(status));
}

}  // namespace stylegan_ops
