r"""Nearest 2x upsample + 3x3 convolution (padding 1) without materialising the upsampled input.

``upsample_conv2d_ref`` is the eager twin (interpolate, then conv2d) and the ``eager`` backend.
``native`` is ``torch.ops.stylegan_ops.upsample_conv2d``: on CUDA the four output phases as
implicit GEMMs on tensor cores (csrc/cuda/), on CPU one GEMM of x with the 9 taps of every filter
and a gather into the 2x output (csrc/cpu/); ``triton`` is
``torch.ops.stylegan_ops.upsample_conv2d_triton`` (phase implicit GEMMs, stylegan_ops/triton/).

Backward. The op is linear in x and in (weight, bias), so with up(x) the nearest upsampling:

    dx = down_sum(conv_transpose2d(dy, weight, padding=1))   (down_sum: sum of each 2x2 block,
                                                             the adjoint of up)
    dW = conv2d_weight(up(x), dy)                          db = Σ_{n,h,w} dy

The CUDA and Triton backward ops move down_sum onto dy: dx is the 3x3 taps applied to the means
of dy's 2x2 windows (avg_pool2d(dy, 2, stride=1, padding=1), one pass of each backend's own
kernel), and dW those means against x, 9 products per pixel and channel pair in either where the
phase form takes 16 (stylegan_ops/triton/upsample_conv2d.py derives it). The CPU op is the
adjoint of its GEMM and gather. Every kernel's dW sums over x's pixels only, skipping the zero
padding.
Double backward runs the formulas above composed of differentiable PyTorch ops (``_backward_composite``,
for the native op as ``stylegan_ops::upsample_conv2d_backward_composite``). The native op's autograd is
C++ (csrc/autograd/), the Triton op's is registered here.
"""

import torch
import torch.nn.functional as F

from stylegan_ops import backends
from stylegan_ops.ops._autocast import autocast_region
from stylegan_ops.ops._checks import check_same_device_and_dtype, check_tensor
from stylegan_ops.ops._layout import conv_output_memory_format, output_memory_format
from stylegan_ops.ops._library import register, triton_kernel

OP = "upsample_conv2d"


def upsample_conv2d_ref(x, weight, bias=None):
    """``conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)``."""
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)


# ---- the phase decomposition (the kernels fold per filter pair: fold_taps in csrc/upsample_conv2d.h,
# _fold_kernel in stylegan_ops/triton/upsample_conv2d.py) -------------------------------------------
# Folded taps are sums of taps, computed as sums: a GEMM with a 0/1 fold matrix would also
# multiply every tap by the zeros, and an infinite tap times 0 is NaN where eager gives ±inf.
# Sums run in float64, rounded once to the weight's dtype.
def _fold_axis(w, dim):
    """Taps (w0, w1, w2) along ``dim`` -> folded taps (a, t) at dims (dim, dim + 1): phase 0 sees
    (w0, w1 + w2), phase 1 sees (w0 + w1, w2)."""
    w0, w1, w2 = w.unbind(dim)
    return torch.stack([torch.stack([w0, w1 + w2], dim), torch.stack([w0 + w1, w2], dim)], dim)


def fold_weight(weight):
    """(C_out, C_in, 3, 3) -> folded weights indexed (2, 2, C_out, C_in, 2, 2) = (a, b, o, c, t, u) in
    weight's dtype, as a permuted view."""
    folded = _fold_axis(_fold_axis(weight.double(), 2), 4)  # (o, c, a, t, b, u)
    return folded.to(weight.dtype).permute(2, 4, 0, 1, 3, 5)


# ---- autograd (the Triton op's; csrc/autograd/upsample_conv2d_kernel.cpp is the native op's) --
def _backward_composite(grad_y, x, weight):
    """The module docstring's backward formulas in differentiable PyTorch ops (for double backward)."""
    n, c_in, h, w = x.shape
    grad_up = F.conv_transpose2d(grad_y, weight, padding=1)
    grad_x = grad_up.reshape(n, c_in, h, 2, w, 2).sum(dim=(3, 5))
    grad_weight = torch.nn.grad.conv2d_weight(F.interpolate(x, scale_factor=2, mode="nearest"), weight.shape,
                                              grad_y, padding=1)
    return grad_x, grad_weight, grad_y.sum(dim=(0, 2, 3))


def _setup_context(ctx, inputs, output):
    x, weight, _ = inputs
    ctx.save_for_backward(x, weight)


def _autograd_backward(backward_op):
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        # Only the gradients autograd asks for: a frozen weight (or x) skips its GEMM, a conv without
        # bias (or with a frozen one) the sum over grad_y.
        needed = list(ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():  # create_graph=True: keep the graph for higher derivatives
            grad_x, grad_weight, grad_bias = _backward_composite(grad_y, x, weight)
        else:
            grad_x, grad_weight, grad_bias = backward_op(grad_y, x, weight, needed)
        return grad_x if needed[0] else None, grad_weight if needed[1] else None, grad_bias if needed[2] else None

    return backward


def _fake_forward(x, weight, bias):
    n, _, h, w = x.shape
    memory_format = conv_output_memory_format(x, weight)
    return x.new_empty((n, weight.shape[0], 2 * h, 2 * w)).contiguous(memory_format=memory_format)


def _fake_backward(grad_y, x, weight, output_mask):
    """grad_x, grad_weight and grad_bias as output_mask asks for them, else empty (0 elements, not computed).
    Each gradient takes its input's memory format: in another, autograd would copy d weight into the
    parameter's layout after every backward."""
    return (
        torch.empty_like(x, memory_format=output_memory_format(x)) if output_mask[0] else x.new_empty(0),
        torch.empty_like(weight, memory_format=output_memory_format(weight)) if output_mask[1] else x.new_empty(0),
        weight.new_empty(weight.shape[:1]) if output_mask[2] else x.new_empty(0),
    )


# ---- the Triton op ------------------------------------------------------------------------------
# Called directly, the Triton ops check their arguments as the native ones do in C++ (the public
# function's checks): a bad shape must not reach a kernel, which would read out of bounds.
@triton_kernel("upsample_conv2d_triton")
def _triton_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    from stylegan_ops.triton import upsample_conv2d as kernels

    _check_args(x, weight, bias)
    return kernels.forward(x, weight, bias)


@triton_kernel("upsample_conv2d_triton_backward")
def _triton_backward(
    grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, output_mask: list[bool]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from stylegan_ops.triton import upsample_conv2d as kernels

    _check_args(x, weight, None)
    n, _, h, w = x.shape
    check_tensor(OP, "grad_y", grad_y, (n, weight.shape[0], 2 * h, 2 * w))
    check_same_device_and_dtype(OP, "x", x, grad_y=grad_y)
    return kernels.backward(grad_y, x, weight, output_mask)


register(OP, fake_forward=_fake_forward, fake_backward=_fake_backward, backward_composite=_backward_composite,
         autograd_backward=_autograd_backward, setup_context=_setup_context)
# backends.resolve_for() checks that a backend can run (extension loaded, Triton present) before one is called.
IMPLEMENTATIONS = {
    "eager": upsample_conv2d_ref,
    "native": lambda *args: torch.ops.stylegan_ops.upsample_conv2d(*args),
    "triton": lambda *args: torch.ops.stylegan_ops.upsample_conv2d_triton(*args),
}


# ---- public function ------------------------------------------------------------------------------
def _check_args(x, weight, bias):
    check_tensor(OP, "x", x, ("N", "C_in", "H", "W"))
    _, c_in, h, w = x.shape
    if c_in == 0 or h == 0 or w == 0:  # as F.interpolate and F.conv2d, which refuse them too
        raise ValueError(f"{OP}: x must have at least one channel and pixel (C_in, H, W > 0), got shape {tuple(x.shape)}")
    check_tensor(OP, "weight", weight, ("C_out", c_in, 3, 3))
    if weight.shape[0] == 0:
        raise ValueError(f"{OP}: weight must have at least one output channel (C_out > 0), got shape {tuple(weight.shape)}")
    if bias is not None:
        check_tensor(OP, "bias", bias, (weight.shape[0],))
    check_same_device_and_dtype(OP, "x", x, weight=weight, bias=bias)


def upsample_conv2d(x, weight, bias=None, *, backend="auto"):
    """``conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)``, fused.

    Args:
        x: (N, C_in, H, W).
        weight: (C_out, C_in, 3, 3).
        bias: (C_out,) or None.
        backend: "auto", "eager", "native" or "triton".

    Returns (N, C_out, 2H, 2W) in x's dtype (inside ``torch.autocast``, every tensor is first cast
    to the autocast dtype), channels_last when x or weight is, as ``F.conv2d``. No backend but eager
    makes the upsampled tensor. The CUDA and Triton kernels compute the four output phases as 2x2
    convolutions of x with folded weights: 16 instead of 36 multiply-adds per input pixel and
    channel pair. The CPU kernel multiplies x by the 9 taps once (9 per pair: each product is shared
    by the 4 outputs that read it) and sums 9 products per output.
    """
    (x, weight, bias), region = autocast_region(x, weight, bias)
    _check_args(x, weight, bias)
    chosen = backends.resolve_for(backend, x, OP, IMPLEMENTATIONS)
    with region:
        return IMPLEMENTATIONS[chosen](x, weight, bias)
