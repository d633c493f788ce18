"""Nearest 2x upsample + 3x3 convolution (padding 1) without materialising the upsampled input.

``upsample_conv2d_ref`` is the eager twin (interpolate, then conv2d) and the ``eager`` backend.
"""

import torch
import torch.nn.functional as F

from stylegan_ops import backends
from stylegan_ops.ops._checks import check_same_device_and_dtype, check_tensor

OP = "upsample_conv2d"


def upsample_conv2d_ref(x, weight, bias=None):
    """``conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)``."""
    return F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)


def _check_args(x, weight, bias):
    check_tensor(OP, "x", x, ("N", "C_in", "H", "W"))
    check_tensor(OP, "weight", weight, ("C_out", x.shape[1], 3, 3))
    if bias is not None:
        check_tensor(OP, "bias", bias, (weight.shape[0],))
    check_same_device_and_dtype(OP, "x", x, weight=weight, bias=bias)


IMPLEMENTATIONS = {"eager": upsample_conv2d_ref}


def upsample_conv2d(x, weight, bias=None, *, backend="auto"):
    """``conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)``, fused.

    Args:
        x: (N, C_in, H, W).
        weight: (C_out, C_in, 3, 3).
        bias: (C_out,) or None.
        backend: "auto", "eager", "native" or "triton".

    Returns (N, C_out, 2H, 2W) in x's dtype. The kernels compute the four output phases
    as 2x2 convolutions of x with folded weights: 16 instead of 36 multiply-adds per
    input pixel and channel pair.
    """
    _check_args(x, weight, bias)
    chosen = backends.resolve(backend, x.device, OP, IMPLEMENTATIONS)
    return IMPLEMENTATIONS[chosen](x, weight, bias)
