// upsample_conv2d on CPU from ATen operators: the phase decomposition runs as ONE convolution
// of the low-resolution x with 2x2 folded weights for all four phases stacked along the output
// channels (4*C_out), padding 1, then an interleaving copy into the 2x output. The upsampled
// input is never materialised: 16 multiply-adds per input pixel and channel pair on an
// (H+1) x (W+1) grid instead of 36 on 4*H*W. The convolution is oneDNN's.
//
// A 2x2 convolution of x padded by 1 has output z[p] covering x[p - 1], x[p]: phase 0 reads
// z[i], phase 1 reads z[i + 1] (the folding is in ../upsample_conv2d.h).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../upsample_conv2d.h"

namespace stylegan_ops {
namespace {

// The folded weights of the four phases stacked along the output channels: (4 * C_out, C_in, 2, 2),
// row (2a + b) * C_out + o.
at::Tensor stacked_phase_weight(const at::Tensor& weight) {
  return fold_weight(weight).reshape({4 * weight.size(0), weight.size(1), 2, 2});
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
  check_upsample_conv2d_args(x, weight, bias);
  const int64_t N = x.size(0), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  const std::optional<at::Tensor> stacked_bias = bias ? std::optional<at::Tensor>(bias->repeat({4})) : std::nullopt;
  const at::Tensor z = at::conv2d(x, stacked_phase_weight(weight), stacked_bias, /*stride=*/1, /*padding=*/1);
  at::Tensor y = at::empty({N, C_out, 2 * H, 2 * W}, x.options().memory_format(output_memory_format(x)));
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t b = 0; b < 2; ++b) phase_of_output(y, a, b).copy_(phase_of_stacked(z, a, b, C_out, H, W));
  }
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> upsample_conv2d_backward_impl(const at::Tensor& grad_y,
                                                                             const at::Tensor& x,
                                                                             const at::Tensor& weight) {
  check_upsample_conv2d_backward_args(grad_y, x, weight);
  const int64_t N = x.size(0), C_in = x.size(1), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  // Scatter dy into the stacked layout; the border row/column of each phase no output reads stays 0.
  at::Tensor grad_z = at::zeros({N, 4 * C_out, H + 1, W + 1}, x.options().memory_format(output_memory_format(x)));
  for (int64_t a = 0; a < 2; ++a) {
    for (int64_t b = 0; b < 2; ++b) phase_of_stacked(grad_z, a, b, C_out, H, W).copy_(phase_of_output(grad_y, a, b));
  }
  auto [grad_x, grad_folded, unused] = at::convolution_backward(
      grad_z, x, stacked_phase_weight(weight), /*bias_sizes=*/std::nullopt, /*stride=*/{1, 1}, /*padding=*/{1, 1},
      /*dilation=*/{1, 1}, /*transposed=*/false, /*output_padding=*/{0, 0}, /*groups=*/1, {true, true, false});
  return {grad_x, unfold_weight_grad(grad_folded, C_out, C_in), grad_y.sum({0, 2, 3})};
}

}  // namespace

TORCH_LIBRARY_IMPL(stylegan_ops, CPU, m) {
  m.impl("upsample_conv2d", &upsample_conv2d_impl);
  m.impl("upsample_conv2d_backward", &upsample_conv2d_backward_impl);
}

}  // namespace stylegan_ops
