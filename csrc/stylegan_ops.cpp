// stylegan_ops._C: the operator schemas (one TORCH_LIBRARY block), the build facts and, in a CUDA
// build, whether a device can run the build's kernels.
//
// Kernels register themselves per device at the end of their own files
// (cpu/<op>_kernel.cpp, cuda/<op>_kernel.cu), autograd likewise (autograd/<op>_kernel.cpp); fake
// tensors and the <op>_backward_composite kernels are registered in Python (stylegan_ops/ops/<op>.py).
#include <Python.h>
#include <torch/library.h>

#ifdef WITH_CUDA
#include <cuda_runtime_api.h>

#include "cuda/kernel_image.h"
#define STYLEGAN_OPS_CUDA_VERSION CUDART_VERSION
#else
#define STYLEGAN_OPS_CUDA_VERSION 0
#define STYLEGAN_OPS_CUDA_ARCH_LIST ""
#endif

TORCH_LIBRARY(stylegan_ops, m) {
  // y = leaky_relu(style_scale * instance_norm(x + noise_weight * noise) + style_bias); also returns the
  // per-plane mean and rstd (N, C) (float32, float64 for float64), all that backward needs besides inputs.
  m.def(
      "noise_adain_lrelu(Tensor x, Tensor? noise, Tensor noise_weight, Tensor style_scale, Tensor style_bias, "
      "float eps, float negative_slope) -> (Tensor y, Tensor mean, Tensor rstd)");
  // grad_noise, (N, 1, H, W), only with compute_grad_noise (which needs noise); else it comes back empty
  // (0 elements): noise is usually a constant that needs no gradient.
  m.def(
      "noise_adain_lrelu_backward(Tensor grad_y, Tensor x, Tensor? noise, Tensor noise_weight, Tensor style_scale, "
      "Tensor style_bias, Tensor mean, Tensor rstd, float negative_slope, bool compute_grad_noise) "
      "-> (Tensor grad_x, Tensor grad_noise, Tensor grad_noise_weight, Tensor grad_style_scale, "
      "Tensor grad_style_bias)");
  // The backward formula in differentiable PyTorch ops, for double backward: recomputes mean and rstd from x.
  m.def(
      "noise_adain_lrelu_backward_composite(Tensor grad_y, Tensor x, Tensor? noise, Tensor noise_weight, "
      "Tensor style_scale, Tensor style_bias, float eps, float negative_slope, bool compute_grad_noise) "
      "-> (Tensor grad_x, Tensor grad_noise, Tensor grad_noise_weight, Tensor grad_style_scale, "
      "Tensor grad_style_bias)");
  // conv2d(nearest_upsample_2x(x), weight, bias, padding=1) as four 2x2 phase convolutions of x.
  m.def("upsample_conv2d(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  // output_mask: which of (grad_x, grad_weight, grad_bias) to compute; one not asked for comes back empty
  // (0 elements), so a frozen weight costs no d weight GEMM and a conv without bias no sum over grad_y.
  m.def(
      "upsample_conv2d_backward(Tensor grad_y, Tensor x, Tensor weight, bool[3] output_mask) "
      "-> (Tensor grad_x, Tensor grad_weight, Tensor grad_bias)");
  m.def(
      "upsample_conv2d_backward_composite(Tensor grad_y, Tensor x, Tensor weight) "
      "-> (Tensor grad_x, Tensor grad_weight, Tensor grad_bias)");
}

#ifdef WITH_CUDA
// cuda_kernel_image_error(device: int) -> str: "" when the device can run this build's kernels.
static PyObject* cuda_kernel_image_error(PyObject*, PyObject* device) {
  const long index = PyLong_AsLong(device);
  if (index == -1 && PyErr_Occurred()) return nullptr;
  const std::string error = stylegan_ops::cuda_kernel_image_error(int(index));
  return PyUnicode_FromStringAndSize(error.data(), Py_ssize_t(error.size()));
}

static PyMethodDef stylegan_ops_methods[] = {
    {"cuda_kernel_image_error", cuda_kernel_image_error, METH_O,
     "cuda_kernel_image_error(device) -> '' if CUDA device `device` can run this build's kernels, else why not."},
    {nullptr, nullptr, 0, nullptr}};
#else
static PyMethodDef* stylegan_ops_methods = nullptr;
#endif

// A plain Python module whose import runs the static registrations above. Build facts are
// module constants so Python can tell what was compiled in without calling an operator.
static PyModuleDef stylegan_ops_module = {
    PyModuleDef_HEAD_INIT, "_C", "Compiled kernels of stylegan_ops (operators live in torch.ops.stylegan_ops).", -1,
    stylegan_ops_methods};

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
