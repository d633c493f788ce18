"""Noise injection + AdaIN + LeakyReLU: ``y = lrelu(s * instance_norm(x + a * noise) + b)``.

``noise_adain_lrelu_ref`` is the eager twin (the seed's math, composed of PyTorch ops)
and the ``eager`` backend.
"""

import torch
import torch.nn.functional as F

from stylegan_ops import backends
from stylegan_ops.ops._checks import check_real, check_same_device_and_dtype, check_tensor

OP = "noise_adain_lrelu"


def noise_adain_lrelu_ref(x, noise, noise_weight, style_scale, style_bias, eps=1e-5, negative_slope=0.2):
    """The seed's NoiseInjection -> InstanceNorm2d -> style affine -> LeakyReLU, op for op."""
    memory_format = _memory_format(x)
    if noise is not None:
        x = x + noise_weight.view(1, -1, 1, 1) * noise
    normalized = F.instance_norm(x, eps=eps)
    y = F.leaky_relu(style_scale[:, :, None, None] * normalized + style_bias[:, :, None, None], negative_slope)
    return y.contiguous(memory_format=memory_format)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def _check_args(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope):
    check_tensor(OP, "x", x, ("N", "C", "H", "W"))
    n, c, h, w = x.shape
    if h * w == 1:
        raise ValueError(
            f"{OP}: x must have more than one spatial element per channel to normalise over "
            f"(H*W > 1, as torch.nn.functional.instance_norm requires), got H={h}, W={w}"
        )
    if noise is not None:
        check_tensor(OP, "noise", noise, (n, 1, h, w))
    check_tensor(OP, "noise_weight", noise_weight, (c,) if noise_weight.dim() == 1 else (1, c, 1, 1))
    check_tensor(OP, "style_scale", style_scale, (n, c))
    check_tensor(OP, "style_bias", style_bias, (n, c))
    check_same_device_and_dtype(
        OP, "x", x, noise=noise, noise_weight=noise_weight, style_scale=style_scale, style_bias=style_bias
    )
    return check_real(OP, "eps", eps), check_real(OP, "negative_slope", negative_slope)


IMPLEMENTATIONS = {"eager": noise_adain_lrelu_ref}


def noise_adain_lrelu(
    x, noise, noise_weight, style_scale, style_bias, *, eps=1e-5, negative_slope=0.2, backend="auto"
):
    """Fused ``leaky_relu(style_scale * instance_norm(x + noise_weight * noise) + style_bias)``.

    Args:
        x: (N, C, H, W), H*W > 1.
        noise: (N, 1, H, W) or None (no noise is added).
        noise_weight: (C,) or (1, C, 1, 1), the per-channel noise strength.
        style_scale, style_bias: (N, C), the per-sample AdaIN affine.
        eps: added to the biased variance over H*W.
        negative_slope: of the LeakyReLU.
        backend: "auto", "eager", "native" or "triton".

    All tensors share one device and one floating dtype; statistics accumulate in float32
    (float64 for float64). Returns a tensor of x's shape, dtype and memory format.
    """
    if not isinstance(noise_weight, torch.Tensor):
        raise TypeError(f"{OP}: noise_weight must be a torch.Tensor, got {type(noise_weight).__name__}")
    eps, negative_slope = _check_args(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope)
    chosen = backends.resolve(backend, x.device, OP, IMPLEMENTATIONS)
    return IMPLEMENTATIONS[chosen](x, noise, noise_weight.reshape(-1), style_scale, style_bias, eps, negative_slope)
