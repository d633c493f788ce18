r"""Noise injection + AdaIN + LeakyReLU: ``y = lrelu(s * instance_norm(x + a * noise) + b)``.

``noise_adain_lrelu_ref`` is the eager twin (the seed's math, composed of PyTorch ops) and
the ``eager`` backend. ``native`` is ``torch.ops.stylegan_ops.noise_adain_lrelu`` (csrc/, its
autograd in C++: csrc/autograd/), ``triton`` is ``torch.ops.stylegan_ops.noise_adain_lrelu_triton``
(stylegan_ops/triton/, its autograd here); both follow the formula below.

Backward, per (n, c) plane of M = H*W elements. With v = x + a ξ, μ and σ² the plane's
mean and biased variance, r = (σ² + eps)^-½, x̂ = (v − μ) r, z = s x̂ + b, y = lrelu(z):

    g      = dy · (z > 0 ? 1 : slope)                   (LeakyReLU)
    db     = Σ g,        ds = Σ g x̂                     (style affine)
    dv     = s r (g − db/M − x̂ ds/M)                     (instance norm: dx̂ = s g, and
                                                          ∂x̂/∂v projects out the mean and x̂)
    dx     = dv,         dξ = Σ_c a_c dv_c,   da_c = Σ_{n,h,w} dv ξ

So backward needs only x, noise, the inputs' small tensors and the per-plane μ, r saved by
the forward: never x̂ or y. The kernels do two passes over a plane (Σ g and Σ g x̂, then dv);
da is reduced per plane and then over the batch in a fixed order (deterministic, no atomics).
dξ, a reduction across planes, is computed only when noise needs a gradient: by the CPU kernel
as it writes dv, in fixed runs of channels; on CUDA (native and Triton) by a kernel of its own
that reads dx once more, adding the products in float in a fixed order.

Double backward runs the same formula composed of differentiable PyTorch ops
(``_backward_composite``, for the native op as ``stylegan_ops::noise_adain_lrelu_backward_composite``),
recomputing μ and r from v so their dependence on x is kept.
"""

import torch
import torch.nn.functional as F

from stylegan_ops import backends
from stylegan_ops.ops._autocast import autocast_region
from stylegan_ops.ops._checks import check_real, check_same_device_and_dtype, check_tensor
from stylegan_ops.ops._dtypes import accumulation_dtype
from stylegan_ops.ops._layout import output_memory_format
from stylegan_ops.ops._library import register, triton_kernel

OP = "noise_adain_lrelu"


def noise_adain_lrelu_ref(x, noise, noise_weight, style_scale, style_bias, eps=1e-5, negative_slope=0.2):
    """The seed's NoiseInjection -> InstanceNorm2d -> style affine -> LeakyReLU, op for op."""
    memory_format = output_memory_format(x)
    if noise is not None:
        x = x + noise_weight.view(1, -1, 1, 1) * noise
    normalized = F.instance_norm(x, eps=eps)
    y = F.leaky_relu(style_scale[:, :, None, None] * normalized + style_bias[:, :, None, None], negative_slope)
    return y.contiguous(memory_format=memory_format)


# ---- autograd (the Triton op's; csrc/autograd/noise_adain_lrelu_kernel.cpp is the native op's) ----
def _backward_composite(grad_y, x, noise, noise_weight, style_scale, style_bias, eps, negative_slope,
                        compute_grad_noise):
    """The module docstring's backward formula in differentiable PyTorch ops (for double backward)."""
    v = x if noise is None else x + noise_weight.view(1, -1, 1, 1) * noise
    mean = v.mean(dim=(2, 3), keepdim=True)
    variance = v.var(dim=(2, 3), unbiased=False, keepdim=True)
    if eps == 0:  # as PyTorch's instance_norm: a constant plane normalises to 0, not 0 / 0
        constant = variance == 0  # (rsqrt of 1 there: an infinite derivative masked by where is NaN)
        rstd = torch.where(constant, 0.0, torch.rsqrt(torch.where(constant, 1.0, variance)))
    else:
        rstd = torch.rsqrt(variance + eps)
    xhat = (v - mean) * rstd
    scale = style_scale[:, :, None, None]
    z = scale * xhat + style_bias[:, :, None, None]
    g = torch.where(z > 0, grad_y, grad_y * negative_slope)
    grad_bias = g.sum(dim=(2, 3))
    grad_scale = (g * xhat).sum(dim=(2, 3))
    grad_v = scale * rstd * (g - g.mean(dim=(2, 3), keepdim=True) - xhat * (g * xhat).mean(dim=(2, 3), keepdim=True))
    # Without noise, noise_weight takes no part: zero (the autograd functions return None for it).
    grad_noise_weight = torch.zeros_like(noise_weight) if noise is None else (grad_v * noise).sum(dim=(0, 2, 3))
    # dξ as (N, 1, H, W), or the ops' empty stand-in when not asked for.
    grad_noise = ((grad_v * noise_weight.view(1, -1, 1, 1)).sum(dim=1, keepdim=True) if compute_grad_noise
                  else grad_v.new_empty(0))
    return grad_v, grad_noise, grad_noise_weight, grad_scale, grad_bias


def _setup_context(ctx, inputs, output):
    x, noise, noise_weight, style_scale, style_bias, eps, negative_slope = inputs
    _, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.set_materialize_grads(False)  # no zero gradients made for mean and rstd: only y's is read
    ctx.save_for_backward(x, noise, noise_weight, style_scale, style_bias, mean, rstd)
    ctx.eps, ctx.negative_slope = eps, negative_slope


def _autograd_backward(backward_op):
    def backward(ctx, grad_y, _grad_mean, _grad_rstd):
        if grad_y is None:
            return (None,) * 7
        x, noise, noise_weight, style_scale, style_bias, mean, rstd = ctx.saved_tensors
        compute_grad_noise = noise is not None and ctx.needs_input_grad[1]
        if torch.is_grad_enabled():  # create_graph=True: keep the graph for higher derivatives
            grads = _backward_composite(grad_y, x, noise, noise_weight, style_scale, style_bias, ctx.eps,
                                        ctx.negative_slope, compute_grad_noise)
        else:
            grads = backward_op(grad_y, x, noise, noise_weight, style_scale, style_bias, mean, rstd,
                                ctx.negative_slope, compute_grad_noise)
        grad_x, grad_noise, grad_noise_weight, grad_scale, grad_bias = grads
        if not compute_grad_noise:
            grad_noise = None  # the ops' empty stand-in
        if noise is None:
            grad_noise_weight = None  # as in eager: noise_weight takes no part without noise
        return grad_x, grad_noise, grad_noise_weight, grad_scale, grad_bias, None, None

    return backward


def _fake_forward(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope):
    y = torch.empty_like(x, memory_format=output_memory_format(x))
    mean = style_scale.new_empty(style_scale.shape, dtype=accumulation_dtype(x.dtype))
    return y, mean, torch.empty_like(mean)


def _fake_backward(grad_y, x, noise, noise_weight, style_scale, style_bias, mean, rstd, negative_slope,
                   compute_grad_noise):
    grad_x = torch.empty_like(x, memory_format=output_memory_format(x))
    n, _, h, w = x.shape
    grad_noise = x.new_empty((n, 1, h, w) if compute_grad_noise else (0,))
    # The kernels return fresh contiguous (C,) and (N, C) tensors whatever the inputs' strides.
    grad_style = style_scale.new_empty(style_scale.shape)
    return grad_x, grad_noise, noise_weight.new_empty(noise_weight.shape), grad_style, torch.empty_like(grad_style)


# ---- the Triton op ------------------------------------------------------------------------------
# Called directly, the Triton ops check their arguments as the native ones do in C++ (the public
# function's checks): a bad shape must not reach a kernel, which would read out of bounds.
@triton_kernel("noise_adain_lrelu_triton")
def _triton_forward(
    x: torch.Tensor,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor,
    style_scale: torch.Tensor,
    style_bias: torch.Tensor,
    eps: float,
    negative_slope: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from stylegan_ops.triton import noise_adain_lrelu as kernels

    _check_tensors(x, noise, noise_weight, style_scale, style_bias)
    return kernels.forward(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope)


@triton_kernel("noise_adain_lrelu_triton_backward")
def _triton_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    noise: torch.Tensor | None,
    noise_weight: torch.Tensor,
    style_scale: torch.Tensor,
    style_bias: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    negative_slope: float,
    compute_grad_noise: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from stylegan_ops.triton import noise_adain_lrelu as kernels

    _check_tensors(x, noise, noise_weight, style_scale, style_bias)
    check_tensor(OP, "grad_y", grad_y, tuple(x.shape))
    check_same_device_and_dtype(OP, "x", x, grad_y=grad_y)
    want = accumulation_dtype(x.dtype)
    for name, stats in (("mean", mean), ("rstd", rstd)):
        if stats.shape != style_scale.shape or stats.dtype != want or stats.device != x.device:
            raise ValueError(f"{OP}: {name} must be the forward's {tuple(style_scale.shape)} {want} on {x.device}, "
                             f"got {tuple(stats.shape)} {stats.dtype} on {stats.device}")
    if compute_grad_noise and noise is None:  # as the native op's check
        raise RuntimeError("noise_adain_lrelu_triton_backward: compute_grad_noise needs a noise tensor, got None")
    return kernels.backward(grad_y, x, noise, noise_weight, style_scale, style_bias, mean, rstd, negative_slope,
                            compute_grad_noise)


register(OP, fake_forward=_fake_forward, fake_backward=_fake_backward, backward_composite=_backward_composite,
         autograd_backward=_autograd_backward, setup_context=_setup_context)
# backends.resolve_for() checks that a backend can run (extension loaded, Triton present) before one is called.
IMPLEMENTATIONS = {
    "eager": noise_adain_lrelu_ref,
    "native": lambda *args: torch.ops.stylegan_ops.noise_adain_lrelu(*args)[0],
    "triton": lambda *args: torch.ops.stylegan_ops.noise_adain_lrelu_triton(*args)[0],
}


# ---- public function ------------------------------------------------------------------------------
def _check_args(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope):
    _check_tensors(x, noise, noise_weight, style_scale, style_bias)
    return check_real(OP, "eps", eps), check_real(OP, "negative_slope", negative_slope)


def _check_tensors(x, noise, noise_weight, style_scale, style_bias):
    check_tensor(OP, "x", x, ("N", "C", "H", "W"))
    n, c, h, w = x.shape
    if h * w == 1:
        raise ValueError(
            f"{OP}: x must have more than one spatial element per channel to normalise over "
            f"(H*W > 1, as torch.nn.functional.instance_norm requires), got H={h}, W={w}"
        )
    if noise is not None:
        check_tensor(OP, "noise", noise, (n, 1, h, w))
    check_tensor(OP, "noise_weight", noise_weight, (c,), (1, c, 1, 1))
    check_tensor(OP, "style_scale", style_scale, (n, c))
    check_tensor(OP, "style_bias", style_bias, (n, c))
    check_same_device_and_dtype(
        OP, "x", x, noise=noise, noise_weight=noise_weight, style_scale=style_scale, style_bias=style_bias
    )


def noise_adain_lrelu(
    x, noise, noise_weight, style_scale, style_bias, *, eps=1e-5, negative_slope=0.2, backend="auto"
):
    """Fused ``leaky_relu(style_scale * instance_norm(x + noise_weight * noise) + style_bias)``.

    Args:
        x: (N, C, H, W), H*W > 1.
        noise: (N, 1, H, W) or None (no noise is added).
        noise_weight: (C,) or (1, C, 1, 1), the per-channel noise strength.
        style_scale, style_bias: (N, C), the per-sample AdaIN affine.
        eps: added to the biased variance over H*W (with eps = 0 a constant plane normalises to 0,
            as in ``instance_norm``).
        negative_slope: of the LeakyReLU.
        backend: "auto", "eager", "native" or "triton".

    All tensors share one device and one floating dtype; statistics accumulate in float32
    (float64 for float64). Returns a tensor of x's shape, dtype and memory format,
    differentiable in every tensor argument. Inside ``torch.autocast`` every tensor is first
    cast to the autocast dtype.
    """
    (x, noise, noise_weight, style_scale, style_bias), region = autocast_region(
        x, noise, noise_weight, style_scale, style_bias
    )
    eps, negative_slope = _check_args(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope)
    chosen = backends.resolve_for(backend, x, OP, IMPLEMENTATIONS)
    with region:
        return IMPLEMENTATIONS[chosen](x, noise, noise_weight.reshape(-1), style_scale, style_bias, eps, negative_slope)
