"""The fused ops: one module per op, each with its eager twin ``<op>_ref`` and its backends."""

from stylegan_ops.ops import noise_adain_lrelu as _noise_adain_lrelu
from stylegan_ops.ops import upsample_conv2d as _upsample_conv2d
from stylegan_ops.ops.noise_adain_lrelu import noise_adain_lrelu, noise_adain_lrelu_ref
from stylegan_ops.ops.upsample_conv2d import upsample_conv2d, upsample_conv2d_ref

# op name -> backends it has an implementation for (availability on a device is separate).
IMPLEMENTED_BACKENDS = {
    _noise_adain_lrelu.OP: tuple(_noise_adain_lrelu.IMPLEMENTATIONS),
    _upsample_conv2d.OP: tuple(_upsample_conv2d.IMPLEMENTATIONS),
}

__all__ = ["noise_adain_lrelu", "noise_adain_lrelu_ref", "upsample_conv2d", "upsample_conv2d_ref"]
