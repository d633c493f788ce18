// upsample_conv2d: argument checks and the weight folding shared by the CPU and CUDA kernels.
//
// Phases: output pixel (2i + a, 2j + b) = Σ_{t,u} Wf[a,b,t,u] · x[i + a - 1 + t, j + b - 1 + u],
// with Wf[a,b] = A_a W A_bᵀ, A_0 = [[1,0,0],[0,1,1]], A_1 = [[1,1,0],[0,0,1]] (rows: the 2
// taps, columns: the 3 original taps). The Python twin is stylegan_ops/ops/upsample_conv2d.py.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include "layout.h"

namespace stylegan_ops {

inline void check_upsample_conv2d_args(const at::Tensor& x, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias) {
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

// A[a][t][k]: how original tap k contributes to folded tap t in phase a (one axis), in `dtype`.
inline at::Tensor phase_taps(const at::Tensor& like, at::ScalarType dtype) {
  static const double taps[12] = {1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1};
  return at::from_blob(const_cast<double*>(taps), {2, 2, 3}, at::kDouble).to(like.options().dtype(dtype));
}

// (C_out, C_in, 3, 3) -> folded (2, 2, C_out, C_in, 2, 2) = (a, b, o, c, t, u) in weight's dtype,
// summed in float32 (float64 for float64) so reduced types are rounded once.
inline at::Tensor fold_weight(const at::Tensor& weight) {
  const auto acc = at::toOpMathType(weight.scalar_type());
  const at::Tensor A = phase_taps(weight, acc);
  return at::einsum("atk,bul,oikl->aboitu", {A, A, weight.to(acc)}).to(weight.scalar_type());
}

// The adjoint of fold_weight: gradient of the folded weight (a, b, o, c, t, u) back to (C_out, C_in, 3, 3),
// in grad_folded's dtype.
inline at::Tensor unfold_weight_grad(const at::Tensor& grad_folded, int64_t c_out, int64_t c_in) {
  const at::Tensor A = phase_taps(grad_folded, grad_folded.scalar_type());
  return at::einsum("atk,bul,aboitu->oikl", {A, A, grad_folded.reshape({2, 2, c_out, c_in, 2, 2})});
}

}  // namespace stylegan_ops
