"""The seed's modules with the same constructor arguments, forward signatures and parameter
names, so a ``state_dict`` moves between the seed's classes and these with ``strict=True``.

``SynthesisBlock`` runs its upsample + conv and its noise + AdaIN + LeakyReLU through the
fused ops; ``backend`` picks their implementation and never changes a parameter.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from stylegan_ops.ops import noise_adain_lrelu, upsample_conv2d

LRELU_SLOPE = 0.2
INSTANCE_NORM_EPS = 1e-5  # nn.InstanceNorm2d's default, which the seed uses


class MappingNetwork(nn.Module):
    """z -> w: ``num_layers`` x (Linear, LeakyReLU(0.2)).

    ``normalize_z`` (not in the seed, off by default) rescales each z to unit RMS first,
    StyleGAN's pixel norm.
    """

    def __init__(self, z_dim, w_dim, num_layers=8, *, normalize_z=False):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_layers = num_layers
        self.normalize_z = normalize_z
        layers = []
        for i in range(num_layers):
            layers += [nn.Linear(z_dim if i == 0 else w_dim, w_dim), nn.LeakyReLU(LRELU_SLOPE)]
        self.network = nn.Sequential(*layers)

    def forward(self, z):
        if self.normalize_z:  # z * rsqrt(mean(z^2) + 1e-8): one fused kernel on CUDA, where the ops are four
            z = F.rms_norm(z, (self.z_dim,), eps=1e-8)
        return self.network(z)


class AdaIN(nn.Module):
    """``style_scale(w) * instance_norm(x) + style_bias(w)``, as in the seed.

    The scale's bias starts at 1 (StyleGAN's init, so a fresh block passes normalised
    activations through); the seed's default init differs, which no state_dict notices.
    """

    def __init__(self, channels, w_dim):
        super().__init__()
        self.channels = channels
        self.w_dim = w_dim
        self.instance_norm = nn.InstanceNorm2d(channels, affine=False)
        self.style_scale_transform = nn.Linear(w_dim, channels)
        self.style_bias_transform = nn.Linear(w_dim, channels)
        nn.init.ones_(self.style_scale_transform.bias)

    def affine_parts(self):
        """(weights, biases) of the two transforms, scale first: stacked, they are one (2C, w_dim)
        affine map whose output halves are (style_scale, style_bias)."""
        scale, bias = self.style_scale_transform, self.style_bias_transform
        return (scale.weight, bias.weight), (scale.bias, bias.bias)

    def styles(self, w):
        """(style_scale, style_bias), each (M, channels) and contiguous, M counting w's vectors (its
        leading dimensions flattened, as the seed's ``view(-1, channels, 1, 1)`` does): N, or 1 for
        one w shared by the batch. Two GEMMs, as in the seed: one GEMM of the stacked transforms
        would take two concatenations and leave strided halves that the fused op copies."""
        return tuple(transform(w).reshape(-1, self.channels)
                     for transform in (self.style_scale_transform, self.style_bias_transform))

    def forward(self, x, w):
        style_scale, style_bias = self.styles(w)
        return style_scale[:, :, None, None] * self.instance_norm(x) + style_bias[:, :, None, None]


class NoiseInjection(nn.Module):
    """``x + weight * noise`` with a learned per-channel weight (zero at init); noise=None draws N(0, 1)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x, noise=None):
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class SynthesisBlock(nn.Module):
    """[nearest 2x upsample] -> 3x3 conv -> noise -> AdaIN -> LeakyReLU(0.2).

    The upsample and its conv run as one ``upsample_conv2d``; noise, AdaIN and the
    activation as one ``noise_adain_lrelu``. Change ``block.backend`` at any time.
    """

    def __init__(self, in_channels, out_channels, w_dim, use_upsample=True, backend="auto"):
        super().__init__()
        self.use_upsample = use_upsample
        self.backend = backend
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.noise_injection = NoiseInjection(out_channels)
        self.adain = AdaIN(out_channels, w_dim)
        self.activation = nn.LeakyReLU(LRELU_SLOPE)

    def forward(self, x, w, noise=None, *, randomize_noise=True, styles=None, conv_bias=True):
        """``noise``: anything that broadcasts against the conv output (N, C, H', W') as in the seed's
        ``x + weight * noise``, usually (N, 1, H', W') or one (1, 1, H', W') map for the batch; or
        None, which draws fresh noise unless ``randomize_noise`` is False (then no noise is added).
        ``styles``: (style_scale, style_bias), (N, C) each, already computed from w by the caller
        (the Generator computes every block's at once), used instead of ``self.adain.styles(w)``.
        ``conv_bias=False`` leaves out the conv's bias: the instance norm after it subtracts every
        per-channel constant, so the bias changes nothing and its gradient is exactly zero. A caller
        that leaves it out must still give it that gradient (else autograd, DDP and optimizers see
        an unused parameter): the Generator does, through its styles' concatenation (``_styles``).
        Without its bias the plain conv runs as ``F.conv2d`` of its weight, so ``self.conv``'s
        module hooks do not run (nor do they for the upsampling conv, a fused op)."""
        bias = self.conv.bias if conv_bias else None
        if self.use_upsample:
            x = upsample_conv2d(x, self.conv.weight, bias, backend=self.backend)
        elif conv_bias:
            x = self.conv(x)
        else:
            x = F.conv2d(x, self.conv.weight, None, padding=1)
        if noise is None and randomize_noise:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        elif noise is not None:
            x, noise = self._noise_per_sample(x, noise)
        style_scale, style_bias = self._styles_per_sample(w, x.shape[0]) if styles is None else styles
        return noise_adain_lrelu(
            x,
            noise,
            self.noise_injection.weight,
            style_scale,
            style_bias,
            eps=INSTANCE_NORM_EPS,
            negative_slope=LRELU_SLOPE,
            backend=self.backend,
        )

    def _styles_per_sample(self, w, batch):
        """(style_scale, style_bias), (N, C) each, for noise_adain_lrelu: a single w is shared by the
        batch (an expanded view), as the seed's broadcasting shares it."""
        style_scale, style_bias = self.adain.styles(w)
        if style_scale.shape[0] == batch:
            return style_scale, style_bias
        if style_scale.shape[0] == 1:
            return style_scale.expand(batch, -1), style_bias.expand(batch, -1)
        raise ValueError(f"SynthesisBlock: w of shape {tuple(w.shape)} holds {style_scale.shape[0]} w vectors for a "
                         f"batch of {batch}; expected (N, w_dim) or (1, w_dim)")

    def _noise_per_sample(self, x, noise):
        """(x, noise) for noise_adain_lrelu, whose noise is one (N, 1, H, W) map per sample: a
        broadcast one is expanded (a stride-0 view, no copy); noise that differs across channels
        (which the seed's broadcasting also accepts) is added to x here, and the op gets none.
        The shape rules are checked by hand, not by torch.broadcast_shapes: that takes 20% of a
        small generator's CPU time per forward, called once per block."""
        if noise.shape == (x.shape[0], 1, x.shape[2], x.shape[3]):  # the generator's random draws
            return x, noise
        pairs = list(zip(reversed(noise.shape), reversed(x.shape)))
        if any(n != d and n != 1 and d != 1 for n, d in pairs):
            raise ValueError(
                f"SynthesisBlock: noise of shape {tuple(noise.shape)} does not broadcast against the conv output "
                f"{tuple(x.shape)}; expected (N, 1, H, W) or (1, 1, H, W)"
            )
        if noise.dim() > x.dim() or any(n != d and d == 1 for n, d in pairs):
            raise ValueError(f"SynthesisBlock: noise of shape {tuple(noise.shape)} would broadcast the conv output "
                             f"{tuple(x.shape)} to {tuple(torch.broadcast_shapes(noise.shape, x.shape))}")
        if noise.dim() >= 3 and noise.shape[-3] != 1:
            return x + self.noise_injection.weight * noise, None
        return x, noise.expand(x.shape[0], 1, x.shape[2], x.shape[3])


def _has_seed_block_layout(module: nn.Module) -> bool:
    conv = getattr(module, "conv", None)
    return (
        hasattr(module, "use_upsample")
        and isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (3, 3)
        and isinstance(getattr(getattr(module, "noise_injection", None), "weight", None), torch.Tensor)
        and isinstance(getattr(getattr(module, "adain", None), "style_scale_transform", None), nn.Linear)
    )


def convert(module: nn.Module, backend: str) -> nn.Module:
    """Sets ``backend`` on every stylegan_ops SynthesisBlock inside ``module``, in place, and
    replaces every other module with the seed's SynthesisBlock layout (use_upsample, a 3x3 conv,
    noise_injection, adain) by one of ours carrying its parameters. Returns ``module`` (or its
    replacement, if ``module`` itself was such a block)."""
    if isinstance(module, SynthesisBlock):
        module.backend = backend
        return module
    if _has_seed_block_layout(module):
        conv = module.conv
        ours = SynthesisBlock(conv.in_channels, conv.out_channels, module.adain.style_scale_transform.in_features,
                              use_upsample=module.use_upsample, backend=backend)
        ours.load_state_dict(module.state_dict(), strict=True)
        return ours.to(device=conv.weight.device, dtype=conv.weight.dtype).train(module.training)
    for name, child in module.named_children():
        replacement = convert(child, backend)
        if replacement is not child:
            setattr(module, name, replacement)
    return module
