// Autograd of the native upsample_conv2d (see autograd.h; the formulas are in
// stylegan_ops/ops/upsample_conv2d.py).
#include <torch/library.h>

#include "autograd.h"

namespace stylegan_ops {
namespace {

using Grads = std::tuple<Tensor, Tensor, Tensor>;  // x, weight, bias

class UpsampleConv2d : public torch::autograd::Function<UpsampleConv2d> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, const OptionalTensor& bias) {
    static const auto op = operator_handle<Tensor(const Tensor&, const Tensor&, const OptionalTensor&)>(
        "stylegan_ops::upsample_conv2d");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    ctx->save_for_backward({x, weight});
    ctx->saved_data["has_bias"] = bias.has_value();
    return op.call(x, weight, bias);
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_outputs) {
    static const auto backward_op =
        operator_handle<Grads(const Tensor&, const Tensor&, const Tensor&, std::array<bool, 3>)>(
            "stylegan_ops::upsample_conv2d_backward");
    static const auto composite_op = operator_handle<Grads(const Tensor&, const Tensor&, const Tensor&)>(
        "stylegan_ops::upsample_conv2d_backward_composite");
    const variable_list saved = ctx->get_saved_variables();
    // Only the gradients autograd asks for: a frozen weight (or x) skips its GEMM, no bias its sum.
    // An absent bias has no input edge: needs_input_grad(2) exists only with one.
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const std::array<bool, 3> needed{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                     has_bias && ctx->needs_input_grad(2)};
    auto [grad_x, grad_weight, grad_bias] =
        at::GradMode::is_enabled() ? composite_op.call(grad_outputs[0], saved[0], saved[1])
                                   : backward_op.call(grad_outputs[0], saved[0], saved[1], needed);
    return {needed[0] ? grad_x : Tensor(), needed[1] ? grad_weight : Tensor(), needed[2] ? grad_bias : Tensor()};
  }
};

Tensor upsample_conv2d_autograd(const Tensor& x, const Tensor& weight, const OptionalTensor& bias) {
  return UpsampleConv2d::apply(x, weight, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(stylegan_ops, Autograd, m) {
  m.impl("upsample_conv2d", &upsample_conv2d_autograd);
}

}  // namespace stylegan_ops
