// csrc/cuda/upsample_conv2d_kernel.cu compiled for the CPU (see cuda_emulation.h), with its host
// functions registered as stylegan_ops_emulated::upsample_conv2d{,_backward} for
// tests/test_cuda_emulation.py.
#define STYLEGAN_OPS_EMULATE_CUDA
#include "cuda_emulation.h"

#include "../../csrc/cuda/upsample_conv2d_kernel.cu"

TORCH_LIBRARY_FRAGMENT(stylegan_ops_emulated, m) {
  m.def("upsample_conv2d", &stylegan_ops::upsample_conv2d_cuda);
  m.def("upsample_conv2d_backward", &stylegan_ops::upsample_conv2d_backward_cuda);
}
