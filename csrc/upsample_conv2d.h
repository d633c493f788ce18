// upsample_conv2d: the argument checks shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/ATen.h>

#include <array>

#include "layout.h"

namespace stylegan_ops {

inline void check_upsample_conv2d_args(const at::Tensor& x, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 4, "upsample_conv2d: x must be 4-D (N, C_in, H, W), got ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "upsample_conv2d: x must be a floating tensor, got ",
              x.scalar_type());
  TORCH_CHECK(x.size(1) > 0 && x.size(2) > 0 && x.size(3) > 0,
              "upsample_conv2d: x must have at least one channel and pixel (C_in, H, W > 0), got ", x.sizes());
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) == 3 && weight.size(3) == 3,
              "upsample_conv2d: weight must have shape (C_out, ", x.size(1), ", 3, 3), got ", weight.sizes());
  TORCH_CHECK(weight.size(0) > 0, "upsample_conv2d: weight must have at least one output channel, got ",
              weight.sizes());
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

// A gradient that upsample_conv2d_backward's output_mask did not ask for: empty, not computed.
inline at::Tensor not_computed(const at::Tensor& like) { return at::empty({0}, like.options()); }

inline void check_upsample_conv2d_backward_args(const at::Tensor& grad_y, const at::Tensor& x,
                                                const at::Tensor& weight) {
  check_upsample_conv2d_args(x, weight, std::nullopt);
  const int64_t N = x.size(0), C_out = weight.size(0), H = x.size(2), W = x.size(3);
  TORCH_CHECK(grad_y.sizes() == at::IntArrayRef({N, C_out, 2 * H, 2 * W}) &&
                  grad_y.scalar_type() == x.scalar_type() && grad_y.device() == x.device(),
              "upsample_conv2d_backward: grad_y must be (", N, ", ", C_out, ", ", 2 * H, ", ", 2 * W, ") ",
              x.scalar_type(), " on ", x.device(), ", got ", grad_y.sizes(), " ", grad_y.scalar_type(), " on ",
              grad_y.device());
}

}  // namespace stylegan_ops
