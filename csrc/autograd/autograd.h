// What the C++ autograd kernels of the native ops share (csrc/autograd/<op>_kernel.cpp).
//
// Each op's autograd is a torch::autograd::Function registered for the Autograd key, so a
// forward and backward pass through a native op never enters Python: on CPU at small planes the
// Python autograd layer of torch.library cost as much as the kernels themselves. The formulas
// are those of stylegan_ops/ops/<op>.py (derivations there; that file also registers the Triton
// op's autograd, in Python). Backward calls the op's backward kernel; under create_graph=True (double
// backward) it calls `<op>_backward_composite` instead, the same formula in differentiable
// PyTorch ops, registered from Python as a CompositeImplicitAutograd kernel.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>

namespace stylegan_ops {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Tensor = at::Tensor;
using OptionalTensor = std::optional<at::Tensor>;

// A typed handle on a stylegan_ops operator, looked up by name (call it once, from a static).
template <typename Signature>
c10::TypedOperatorHandle<Signature> operator_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace stylegan_ops
