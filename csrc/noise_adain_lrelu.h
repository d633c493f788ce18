// noise_adain_lrelu: argument checks and the (N, C, H*W) plane view shared by the CPU and
// CUDA kernels. The math and the backward derivation are in stylegan_ops/ops/noise_adain_lrelu.py.
#pragma once

#include <ATen/ATen.h>

#include "layout.h"

namespace stylegan_ops {

// A 4-D tensor seen as N x C planes of H*W elements: element (n, c, i) of the plane lives at
// n * n_stride + c * c_stride + i * hw_stride. Covers NCHW (hw_stride 1), channels_last
// (hw_stride C) and broadcast (stride 0) tensors without a copy.
struct PlaneView {
  int64_t n_stride, c_stride, hw_stride;
};

// H and W collapse into one index when stepping W then H is one arithmetic progression.
inline bool hw_collapses(const at::Tensor& t) {
  return t.size(2) == 1 || t.size(3) == 1 || t.stride(2) == t.stride(3) * t.size(3);
}

// `t` itself if its H, W collapse, else a contiguous copy (only for exotic strides).
inline at::Tensor with_collapsible_hw(const at::Tensor& t) {
  return hw_collapses(t) ? t : t.contiguous();
}

inline std::optional<at::Tensor> with_collapsible_hw(const std::optional<at::Tensor>& t) {
  return t ? std::optional<at::Tensor>(with_collapsible_hw(*t)) : std::nullopt;
}

inline PlaneView plane_view(const at::Tensor& t) {
  const int64_t hw_stride = t.size(3) == 1 ? t.stride(2) : t.stride(3);
  return {t.stride(0), t.stride(1), hw_stride};
}

// Statistics (mean, rstd) and the per-plane gradient sums are float32, float64 for float64.
inline at::ScalarType stats_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_noise_adain_lrelu_args(const at::Tensor& x, const std::optional<at::Tensor>& noise,
                                         const at::Tensor& noise_weight, const at::Tensor& style_scale,
                                         const at::Tensor& style_bias) {
  TORCH_CHECK(x.dim() == 4, "noise_adain_lrelu: x must be 4-D (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "noise_adain_lrelu: x must be a floating tensor, got ",
              x.scalar_type());
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(H * W > 1, "noise_adain_lrelu: x needs H*W > 1 to normalise over, got H=", H, ", W=", W);
  auto check = [&](const at::Tensor& t, const char* name, at::IntArrayRef shape) {
    TORCH_CHECK(t.sizes() == shape, "noise_adain_lrelu: ", name, " must have shape ", shape, ", got ", t.sizes());
    TORCH_CHECK(t.device() == x.device(), "noise_adain_lrelu: ", name, " is on ", t.device(), " but x is on ",
                x.device());
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "noise_adain_lrelu: ", name, " has dtype ", t.scalar_type(),
                " but x has ", x.scalar_type());
  };
  if (noise.has_value()) check(*noise, "noise", {N, 1, H, W});
  check(noise_weight, "noise_weight", {C});
  check(style_scale, "style_scale", {N, C});
  check(style_bias, "style_bias", {N, C});
  TORCH_CHECK(N * C < (int64_t(1) << 31), "noise_adain_lrelu: N*C must be below 2^31 (one block per plane), got ",
              N * C);
}

inline void check_noise_adain_lrelu_backward_args(const at::Tensor& grad_y, const at::Tensor& x,
                                                  const std::optional<at::Tensor>& noise,
                                                  const at::Tensor& noise_weight, const at::Tensor& style_scale,
                                                  const at::Tensor& style_bias, const at::Tensor& mean,
                                                  const at::Tensor& rstd, bool compute_grad_noise) {
  check_noise_adain_lrelu_args(x, noise, noise_weight, style_scale, style_bias);
  TORCH_CHECK(noise.has_value() || !compute_grad_noise,
              "noise_adain_lrelu_backward: compute_grad_noise needs a noise tensor, got None");
  TORCH_CHECK(grad_y.sizes() == x.sizes() && grad_y.scalar_type() == x.scalar_type() && grad_y.device() == x.device(),
              "noise_adain_lrelu_backward: grad_y must match x in shape, dtype and device, got ", grad_y.sizes(), " ",
              grad_y.scalar_type());
  const auto stats = stats_dtype(x.scalar_type());
  for (const auto* t : {&mean, &rstd}) {
    TORCH_CHECK(t->sizes() == style_scale.sizes() && t->scalar_type() == stats && t->device() == x.device(),
                "noise_adain_lrelu_backward: mean and rstd must be (N, C) ", stats,
                " tensors from the forward on x's device");
  }
}

}  // namespace stylegan_ops
