// upsample_conv2d from ATen operators, for every device: the phase decomposition runs as ONE
// convolution of the low-resolution x with 2x2 folded weights for all four phases stacked
// along the output channels (4*C_out), padding 1, then an interleaving copy into the 2x
// output. The upsampled input is never materialised: 16 multiply-adds per input pixel and
// channel pair on an (H+1) x (W+1) grid instead of 36 on 4*H*W.
//
// Phases: output pixel (2i + a, 2j + b) = Σ_{t,u} Wf[a,b,t,u] · x[i + a - 1 + t, j + b - 1 + u],
// with Wf[a,b] = A_a W A_bᵀ, A_0 = [[1,0,0],[0,1,1]], A_1 = [[1,1,0],[0,0,1]] (rows: the 2
// taps, columns: the 3 original taps). A 2x2 convolution of x padded by 1 has output z[p]
// covering x[p - 1], x[p]: phase 0 reads z[i], phase 1 reads z[i + 1].
//
// On CPU the convolution is oneDNN's; on CUDA it is cuDNN's (a dedicated tensor-core
// kernel that writes the interleaved output directly is still to come).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "layout.h"

namespace stylegan_ops {
namespace {

void check_args(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 4, "upsample_conv2d: x must be 4-D (N, C_in, H, W), got ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "upsample_conv2d: x must be a floating tensor, got ",
              x.scalar_type());
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) == 3 && weight.size(3) == 3,
              "upsample_conv2d: weight must have shape (C_out, ", x.size(1), ", 3, 3), got ", weight.sizes());
  for (const auto& [t, name] : {std::pair{&weight, "weight"}, std::pair{bias ? &*bias : nullptr, "bias"}}) {
    if (t == nullptr) continue;
    TORCH_CHECK(t->device() == x.device(), "upsample_conv2d: ", name, " is on ", t->device(), " but x is on ",
                x.device());
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), "upsample_conv2d: ", name, " has dtype ", t->scalar_type(),
                " but x has ", x.scalar_type());
  }
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "upsample_conv2d: bias must have shape (",
                weight.size(0), ",), got ", bias->sizes());
  }
}

// A[a][t][k]: how original tap k contributes to folded tap t in phase a (one axis).
at::Tensor phase_taps(const at::Tensor& like) {
  static const double taps[12] = {1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1};
  return at::from_blob(const_cast<double*>(taps), {2, 2, 3}, at::kDouble).to(like.options());
}

// (C_out, C_in, 3, 3) -> (4 * C_out, C_in, 2, 2), phase-major: row (2a + b) * C_out + o.
at::Tensor fold_weight(const at::Tensor& weight) {
  const at::Tensor A = phase_taps(weight);
  return at::einsum("atk,bul,oikl->aboitu", {A, A, weight})
      .reshape({4 * weight.size(0), weight.size(1), 2, 2});
}

// The adjoint of fold_weight: gradient of the folded weight back to the 3x3 weight.
at::Tensor unfold_weight_grad(const at::Tensor& grad_folded, int64_t c_out, int64_t c_in) {
  const at::Tensor A = phase_taps(grad_folded);
  return at::einsum("atk,bul,aboitu->oikl", {A, A, grad_folded.reshape({2, 2, c_out, c_in, 2, 2})});
}

// View of the (N, C, 2H, 2W) tensor `y` holding phase (a, b): y[:, :, a::2, b::2].
at::Tensor phase_of_output(const at::Tensor& y, int64_t a, int64_t b) {
  using at::indexing::Slice;
  return y.index({Slice(), Slice(), Slice(a, at::indexing::None, 2), Slice(b, at::indexing::None, 2)});
}

// View of the stacked phase-conv output z (N, 4C, H+1, W+1) holding phase (a, b): (N, C, H, W).
at::Tensor phase_of_stacked(const at::Tensor& z, int64_t a, int64_t b, int64_t c, int64_t h, int64_t w) {
  return z.narrow(1, (2 * a + b) * c, c).narrow(2, a, h).narrow(3, b, w);
}

at::Tensor upsample_conv2d_impl(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_args(x, weight, bias);
  const int64_t N = x.size(0), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  const std::optional<at::Tensor> stacked_bias = bias ? std::optional<at::Tensor>(bias->repeat({4})) : std::nullopt;
  const at::Tensor z = at::conv2d(x, fold_weight(weight), stacked_bias, /*stride=*/1, /*padding=*/1);
  at::Tensor y = at::empty({N, C_out, 2 * H, 2 * W}, x.options().memory_format(output_memory_format(x)));
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t b = 0; b < 2; ++b) phase_of_output(y, a, b).copy_(phase_of_stacked(z, a, b, C_out, H, W));
  }
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> upsample_conv2d_backward_impl(const at::Tensor& grad_y,
                                                                             const at::Tensor& x,
                                                                             const at::Tensor& weight) {
  check_args(x, weight, std::nullopt);
  const int64_t N = x.size(0), C_in = x.size(1), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  TORCH_CHECK(grad_y.sizes() == at::IntArrayRef({N, C_out, 2 * H, 2 * W}) && grad_y.scalar_type() == x.scalar_type(),
              "upsample_conv2d_backward: grad_y must be (", N, ", ", C_out, ", ", 2 * H, ", ", 2 * W, ") ",
              x.scalar_type(), ", got ", grad_y.sizes(), " ", grad_y.scalar_type());
  // Scatter dy into the stacked layout; the border row/column of each phase no output reads stays 0.
  at::Tensor grad_z = at::zeros({N, 4 * C_out, H + 1, W + 1}, x.options().memory_format(output_memory_format(x)));
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t b = 0; b < 2; ++b) phase_of_stacked(grad_z, a, b, C_out, H, W).copy_(phase_of_output(grad_y, a, b));
  }
  auto [grad_x, grad_folded, unused] = at::convolution_backward(
      grad_z, x, fold_weight(weight), /*bias_sizes=*/std::nullopt, /*stride=*/{1, 1}, /*padding=*/{1, 1},
      /*dilation=*/{1, 1}, /*transposed=*/false, /*output_padding=*/{0, 0}, /*groups=*/1, {true, true, false});
  return {grad_x, unfold_weight_grad(grad_folded, C_out, C_in), grad_y.sum({0, 2, 3})};
}

}  // namespace

// Built from ATen operators, so one registration serves every device.
TORCH_LIBRARY_IMPL(stylegan_ops, CompositeExplicitAutograd, m) {
  m.impl("upsample_conv2d", &upsample_conv2d_impl);
  m.impl("upsample_conv2d_backward", &upsample_conv2d_backward_impl);
}

}  // namespace stylegan_ops
