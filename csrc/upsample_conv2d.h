// upsample_conv2d: argument checks and the weight folding shared by the CPU and CUDA kernels
// (per (o, c) filter pair, host and device).
//
// Phases: output pixel (2i + a, 2j + b) = Σ_{t,u} Wf[a,b,t,u] · x[i + a - 1 + t, j + b - 1 + u],
// with Wf[a,b] = A_a W A_bᵀ, A_0 = [[1,0,0],[0,1,1]], A_1 = [[1,1,0],[0,0,1]] (rows: the 2
// taps, columns: the 3 original taps). The Python twin is stylegan_ops/ops/upsample_conv2d.py.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

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

// ---- the folding, per (o, c) pair: 3x3 taps -> 16 folded taps (a, b, t, u) ------------------------
// Along one axis, A_a applied to taps w[0..2]: phase 0 -> (w0, w1 + w2), phase 1 -> (w0 + w1, w2).
template <typename T>
C10_HOST_DEVICE inline void fold_axis(const T w[3], T folded[2][2]) {
  folded[0][0] = w[0];
  folded[0][1] = w[1] + w[2];
  folded[1][0] = w[0] + w[1];
  folded[1][1] = w[2];
}

// Its adjoint (A_0ᵀ g_0 + A_1ᵀ g_1): gradient of the four (a, t) folded taps -> the three taps.
template <typename T>
C10_HOST_DEVICE inline void unfold_axis(const T grad_folded[2][2], T grad[3]) {
  grad[0] = grad_folded[0][0] + grad_folded[1][0];
  grad[1] = grad_folded[0][1] + grad_folded[1][0];
  grad[2] = grad_folded[0][1] + grad_folded[1][1];
}

// w[3k + l] (row k, column l) -> folded[8a + 4b + 2t + u]: rows folded first, then columns.
template <typename T>
C10_HOST_DEVICE inline void fold_taps(const T w[9], T folded[16]) {
  T rows[2][2][3];  // (a, t, l)
  for (int l = 0; l < 3; ++l) {
    const T column[3] = {w[l], w[3 + l], w[6 + l]};
    T f[2][2];
    fold_axis(column, f);
    for (int a = 0; a < 2; ++a)
      for (int t = 0; t < 2; ++t) rows[a][t][l] = f[a][t];
  }
  for (int a = 0; a < 2; ++a) {
    for (int t = 0; t < 2; ++t) {
      T f[2][2];
      fold_axis(rows[a][t], f);
      for (int b = 0; b < 2; ++b)
        for (int u = 0; u < 2; ++u) folded[8 * a + 4 * b + 2 * t + u] = f[b][u];
    }
  }
}

// The adjoint of fold_taps, in the reverse order: columns, then rows.
template <typename T>
C10_HOST_DEVICE inline void unfold_taps(const T grad_folded[16], T grad[9]) {
  T rows[2][2][3];  // (a, t, l)
  for (int a = 0; a < 2; ++a) {
    for (int t = 0; t < 2; ++t) {
      T g[2][2];
      for (int b = 0; b < 2; ++b)
        for (int u = 0; u < 2; ++u) g[b][u] = grad_folded[8 * a + 4 * b + 2 * t + u];
      unfold_axis(g, rows[a][t]);
    }
  }
  for (int l = 0; l < 3; ++l) {
    T g[2][2], column[3];
    for (int a = 0; a < 2; ++a)
      for (int t = 0; t < 2; ++t) g[a][t] = rows[a][t][l];
    unfold_axis(g, column);
    for (int k = 0; k < 3; ++k) grad[3 * k + l] = column[k];
  }
}

}  // namespace stylegan_ops
