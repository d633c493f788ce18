// csrc/cuda/noise_adain_lrelu_kernel.cu compiled for the CPU (see cuda_emulation.h), with its host
// functions registered as stylegan_ops_emulated::noise_adain_lrelu{,_backward} for
// tests/test_cuda_emulation.py.
#define STYLEGAN_OPS_EMULATE_CUDA
#include "cuda_emulation.h"

#include "../../csrc/cuda/noise_adain_lrelu_kernel.cu"

TORCH_LIBRARY_FRAGMENT(stylegan_ops_emulated, m) {
  m.def("noise_adain_lrelu", &stylegan_ops::noise_adain_lrelu_cuda);
  m.def("noise_adain_lrelu_backward", &stylegan_ops::noise_adain_lrelu_backward_cuda);
}
