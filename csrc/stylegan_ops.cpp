// stylegan_ops._C: the operator schemas (one TORCH_LIBRARY block) and the build facts.
//
// Kernels register themselves per device at the end of their own files
// (cpu/<op>_kernel.cpp, cuda/<op>_kernel.cu); autograd and fake tensors are registered
// in Python (stylegan_ops/ops/<op>.py).
#include <Python.h>
#include <torch/library.h>

#ifdef WITH_CUDA
#include <cuda_runtime_api.h>
#define STYLEGAN_OPS_CUDA_VERSION CUDART_VERSION
#else
#define STYLEGAN_OPS_CUDA_VERSION 0
#define STYLEGAN_OPS_CUDA_ARCH_LIST ""
#endif

TORCH_LIBRARY(stylegan_ops, m) {
}

// A plain Python module whose import runs the static registrations above. Build facts are
// module constants so Python can tell what was compiled in without calling an operator.
static PyModuleDef stylegan_ops_module = {
    PyModuleDef_HEAD_INIT, "_C", "Compiled kernels of stylegan_ops (operators live in torch.ops.stylegan_ops).", -1,
    nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&stylegan_ops_module);
  if (module == nullptr) return nullptr;
  // CUDA runtime version compiled against, as CUDART_VERSION (13000 = 13.0); 0 without CUDA.
  if (PyModule_AddIntConstant(module, "cuda_version", STYLEGAN_OPS_CUDA_VERSION) < 0 ||
      PyModule_AddStringConstant(module, "cuda_arch_list", STYLEGAN_OPS_CUDA_ARCH_LIST) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
