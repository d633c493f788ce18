// Autograd of the native noise_adain_lrelu (see autograd.h; the formula and its derivation are in
// stylegan_ops/ops/noise_adain_lrelu.py).
#include <torch/library.h>

#include "autograd.h"

namespace stylegan_ops {
namespace {

using Grads = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;  // x, noise, noise_weight, style_scale, style_bias

class NoiseAdainLrelu : public torch::autograd::Function<NoiseAdainLrelu> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const OptionalTensor& noise,
                               const Tensor& noise_weight, const Tensor& style_scale, const Tensor& style_bias,
                               double eps, double negative_slope) {
    static const auto op = operator_handle<std::tuple<Tensor, Tensor, Tensor>(
        const Tensor&, const OptionalTensor&, const Tensor&, const Tensor&, const Tensor&, double, double)>(
        "stylegan_ops::noise_adain_lrelu");
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    auto [y, mean, rstd] = op.call(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope);
    ctx->save_for_backward({x, noise.value_or(Tensor()), noise_weight, style_scale, style_bias, mean, rstd});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["negative_slope"] = negative_slope;
    ctx->mark_non_differentiable({mean, rstd});
    // Left on, autograd would hand backward zero tensors for mean's and rstd's gradients, made by
    // two fill kernels on every backward; only y's is read.
    ctx->set_materialize_grads(false);
    return {y, mean, rstd};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_outputs) {
    static const auto backward_op = operator_handle<Grads(const Tensor&, const Tensor&, const OptionalTensor&,
                                                          const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                          const Tensor&, double, bool)>(
        "stylegan_ops::noise_adain_lrelu_backward");
    static const auto composite_op = operator_handle<Grads(const Tensor&, const Tensor&, const OptionalTensor&,
                                                           const Tensor&, const Tensor&, const Tensor&, double,
                                                           double, bool)>(
        "stylegan_ops::noise_adain_lrelu_backward_composite");
    const variable_list saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &noise_weight = saved[2], &style_scale = saved[3], &style_bias = saved[4];
    const OptionalTensor noise = saved[1].defined() ? OptionalTensor(saved[1]) : std::nullopt;
    const double negative_slope = ctx->saved_data["negative_slope"].toDouble();
    const Tensor& grad_y = grad_outputs[0];
    if (!grad_y.defined()) return variable_list(7);
    // Edges count defined tensor inputs only: with noise present, edge 1 is noise.
    const bool compute_grad_noise = noise && ctx->needs_input_grad(1);
    auto [grad_x, grad_noise, grad_noise_weight, grad_scale, grad_bias] =
        at::GradMode::is_enabled()
            ? composite_op.call(grad_y, x, noise, noise_weight, style_scale, style_bias,
                                ctx->saved_data["eps"].toDouble(), negative_slope, compute_grad_noise)
            : backward_op.call(grad_y, x, noise, noise_weight, style_scale, style_bias, saved[5], saved[6],
                               negative_slope, compute_grad_noise);
    if (!compute_grad_noise) grad_noise = Tensor();  // the ops' empty stand-in
    if (!noise) grad_noise_weight = Tensor();  // as in eager: noise_weight takes no part without noise
    return {grad_x, grad_noise, grad_noise_weight, grad_scale, grad_bias, Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor> noise_adain_lrelu_autograd(const Tensor& x, const OptionalTensor& noise,
                                                               const Tensor& noise_weight, const Tensor& style_scale,
                                                               const Tensor& style_bias, double eps,
                                                               double negative_slope) {
  const variable_list out =
      NoiseAdainLrelu::apply(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(stylegan_ops, Autograd, m) {
  m.impl("noise_adain_lrelu", &noise_adain_lrelu_autograd);
}

}  // namespace stylegan_ops
