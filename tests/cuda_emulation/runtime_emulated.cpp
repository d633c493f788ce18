// What the emulated runtime (cuda_emulation.h) tells tests/test_cuda_emulation.py about itself:
// stylegan_ops_emulated::kernel_launches(), the kernels launched so far, so that a test can count
// what one call of a host function launches.
#include "cuda_emulation.h"

#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(stylegan_ops_emulated, m) {
  m.def("kernel_launches() -> int", [] { return cuda_emulation::kernel_launches; });
}
