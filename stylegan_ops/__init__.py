"""Fused kernels for StyleGAN-style generators.

>>> import stylegan_ops as so
>>> y = so.noise_adain_lrelu(x, noise, noise_weight, style_scale, style_bias)
>>> y = so.upsample_conv2d(x, weight, bias)
>>> so.available_backends("cuda")
"""

from stylegan_ops import nn
from stylegan_ops._extension import build_info
from stylegan_ops.backends import available_backends
from stylegan_ops.ops import noise_adain_lrelu, upsample_conv2d

__version__ = "0.1.0"
__all__ = ["available_backends", "build_info", "nn", "noise_adain_lrelu", "upsample_conv2d"]
