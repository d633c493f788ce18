"""A StyleGAN generator assembled from the seed's modules.

mapping (z -> w) -> w per block (``num_ws`` of them, with truncation and style mixing)
-> learned constant 4x4 -> two SynthesisBlocks per resolution (the first of each level
above 4x4 upsamples) -> 1x1 to-RGB.
"""

import numbers

import torch
import torch.nn as nn

from stylegan_ops.nn.modules import MappingNetwork, SynthesisBlock

NOISE_MODES = ("random", "const", "none")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_int_in(value, low, high) -> bool:
    return _is_int(value) and low <= value <= high


def _is_power_of_two(value) -> bool:
    return _is_int(value) and value > 0 and value & (value - 1) == 0


def _skips_conv_bias(block: SynthesisBlock) -> bool:
    """Whether the Generator runs ``block`` without its conv bias (removed by the instance norm after
    it anyway): on every backend but eager, which stays the seed's computation op for op."""
    return block.backend != "eager" and block.conv.bias is not None


class Generator(nn.Module):
    """StyleGAN generator.

    Args:
        z_dim, w_dim: latent sizes.
        resolution: output side, a power of two in [4, 1024].
        img_channels: output channels.
        mapping_layers: depth of the mapping network.
        backend: op backend of every SynthesisBlock ("auto", "eager", "native", "triton").
        channel_base, channel_max: channels at resolution r are ``min(channel_base // r, channel_max)``
            (defaults: 512 up to 32x32, then 256, 128, 64, 32, 16 at 64..1024).
        normalize_z: pixel-normalise z before mapping.
        w_avg_beta: decay of the moving average of w updated in training mode (truncation target).
        channels_last: store the conv weights channels_last (NHWC); the activations follow them, as
            after ``.to(memory_format=torch.channels_last)``.

    On every backend but eager the blocks run their convs without bias: the instance norm after
    each removes any per-channel constant, so the output is the same, and each bias still gets its
    gradient, exactly zero (eager's is rounding noise), as a parameter of the graph.
    """

    def __init__(
        self,
        z_dim=512,
        w_dim=512,
        resolution=1024,
        img_channels=3,
        mapping_layers=8,
        backend="auto",
        *,
        channel_base=16384,
        channel_max=512,
        normalize_z=True,
        w_avg_beta=0.995,
        channels_last=False,
    ):
        super().__init__()
        if not _is_power_of_two(resolution) or not 4 <= resolution <= 1024:
            raise ValueError(f"resolution must be a power of two in [4, 1024], got {resolution!r}")
        for name, value in (("z_dim", z_dim), ("w_dim", w_dim), ("img_channels", img_channels),
                            ("mapping_layers", mapping_layers), ("channel_base", channel_base),
                            ("channel_max", channel_max)):
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= w_avg_beta <= 1.0:
            raise ValueError(f"w_avg_beta must be in [0, 1], got {w_avg_beta!r}")
        if channel_base // resolution < 1:
            raise ValueError(f"channel_base={channel_base} leaves no channels at resolution {resolution}")

        self.z_dim, self.w_dim, self.resolution, self.img_channels = z_dim, w_dim, resolution, img_channels
        self.w_avg_beta = w_avg_beta
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, normalize_z=normalize_z)

        def channels(res):
            return min(channel_base // res, channel_max)

        self.const = nn.Parameter(torch.randn(channels(4), 4, 4))
        blocks, block_resolutions = [], []
        in_channels = channels(4)
        for log2_res in range(2, resolution.bit_length()):
            res = 2**log2_res
            for use_upsample in (res > 4, False):
                blocks.append(SynthesisBlock(in_channels, channels(res), w_dim, use_upsample, backend))
                block_resolutions.append(res)
                in_channels = channels(res)
        self.blocks = nn.ModuleList(blocks)
        self.block_resolutions = tuple(block_resolutions)
        self.to_rgb = nn.Conv2d(in_channels, img_channels, kernel_size=1)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        for i, res in enumerate(block_resolutions):
            self.register_buffer(f"noise_const_{i}", torch.randn(1, 1, res, res))
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def num_ws(self) -> int:
        """How many w vectors a forward consumes: one per SynthesisBlock."""
        return len(self.blocks)

    @property
    def backend(self) -> str:
        return self.blocks[0].backend

    @backend.setter
    def backend(self, backend: str) -> None:
        for block in self.blocks:
            block.backend = backend

    def map(self, z, *, truncation_psi=1.0, truncation_cutoff=None, mix_z=None, crossover=None):
        """z (N, z_dim) -> ws (N, num_ws, w_dim).

        Blocks ``crossover`` and later take their w from ``mix_z`` (style mixing); blocks
        before ``truncation_cutoff`` (all if None) are pulled toward ``w_avg`` by
        ``truncation_psi`` (1: no truncation, 0: every z maps to w_avg). In training mode
        the batch's mean w updates ``w_avg``.
        """
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be a tensor of shape (N, {self.z_dim}), got {getattr(z, 'shape', type(z))}")
        if not z.is_floating_point():
            raise TypeError(f"z must be a floating-point tensor, got {z.dtype}")
        if (mix_z is None) != (crossover is None):
            raise ValueError("style mixing needs both mix_z and crossover (or neither)")
        cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
        if not _is_int_in(cutoff, 0, self.num_ws):
            raise ValueError(
                f"truncation_cutoff must be None or an int in [0, {self.num_ws}], got {truncation_cutoff!r}"
            )
        psi_is_scalar = isinstance(truncation_psi, torch.Tensor) and truncation_psi.dim() == 0
        if not psi_is_scalar and (isinstance(truncation_psi, bool) or not isinstance(truncation_psi, numbers.Real)):
            raise TypeError(f"truncation_psi must be a real number, got {type(truncation_psi).__name__}")

        w = self.mapping(z)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        if mix_z is not None:
            if not isinstance(mix_z, torch.Tensor) or mix_z.shape != z.shape:
                raise ValueError(f"mix_z must have z's shape {tuple(z.shape)}, got {getattr(mix_z, 'shape', type(mix_z))}")
            if not _is_int_in(crossover, 0, self.num_ws):
                raise ValueError(f"crossover must be an int in [0, {self.num_ws}], got {crossover!r}")
            ws[:, crossover:] = self.mapping(mix_z).unsqueeze(1)
        if truncation_psi != 1:
            w_avg = self.w_avg.to(ws.dtype)
            ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws

    def synthesize(self, ws, *, noise_mode="random"):
        """ws (N, num_ws, w_dim) -> images (N, img_channels, resolution, resolution).

        noise_mode: "random" (fresh noise per call), "const" (the stored per-block noise
        buffers, so repeated calls agree) or "none" (no noise).
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if not isinstance(ws, torch.Tensor) or ws.dim() != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"ws must be a tensor of shape (N, {self.num_ws}, {self.w_dim}), got {getattr(ws, 'shape', type(ws))}"
            )
        batch = ws.shape[0]
        styles = self._styles(ws)
        # No layout of its own: conv2d and upsample_conv2d return channels_last when their weight is,
        # so the activations take the conv weights' layout from the first conv on.
        x = self.const.unsqueeze(0).expand(batch, -1, -1, -1).to(ws.dtype)
        for i, (block, noise) in enumerate(zip(self.blocks, self._noise_maps(ws, noise_mode))):
            x = block(x, ws[:, i], noise, randomize_noise=False, styles=styles[i],
                      conv_bias=not _skips_conv_bias(block))
        return self.to_rgb(x)

    def _noise_maps(self, ws, noise_mode):
        """Each block's noise: (N, 1, H, W) draws, all from one randn call (one kernel, where a block
        drawing its own takes one each); the (1, 1, H, W) const buffers, which the blocks broadcast;
        or None."""
        if noise_mode == "none":
            return [None] * self.num_ws
        if noise_mode == "const":
            return [getattr(self, f"noise_const_{i}").to(ws.dtype) for i in range(self.num_ws)]
        batch = ws.shape[0]
        sizes = [batch * res * res for res in self.block_resolutions]
        draws = torch.randn(sum(sizes), device=ws.device, dtype=ws.dtype).split(sizes)
        return [draw.view(batch, 1, res, res) for draw, res in zip(draws, self.block_resolutions)]

    def _styles(self, ws):
        """Every block's (style_scale, style_bias), (N, C) each and contiguous (the ops copy strided
        ones): one batched GEMM per run of blocks of one width (a batch of GEMMs shares its sizes;
        the ws may differ per block, under style mixing and truncation cutoffs), batched over the
        run's (block, scale or bias) halves. Two concatenations gather all blocks' weights and
        biases, split into the runs' rows; one more repeats every block's w, for its scale and its bias
        half, and a run adds its GEMM, where the blocks on their own take two GEMMs each. The ws are
        repeated before the transpose, not after: torch 2.11's export of a repeat of the transposed
        (strided) ws leaves a guard it cannot prove for a dynamic batch, ``Min(8*N, 16*N) == 8*N``.
        Splits and one unbind per run, not slices: the backward of a split is one concatenation and
        that of an unbind one stack, where each slice's backward fills a zero tensor of the whole and
        copies into it, and autograd adds those up (about 50 more kernels a training step at 256 px).

        The conv biases that the blocks leave out (``_skips_conv_bias``) join the biases' concatenation
        unread: its backward hands each its exact gradient, zero, at no cost of its own, where adding
        a bias took a pass over the conv's output, and its gradient a sum over it."""
        runs = []  # [first block, end, channels] of each run of consecutive blocks of one width
        for i, block in enumerate(self.blocks):
            if runs and runs[-1][2] == block.adain.channels:
                runs[-1][1] = i + 1
            else:
                runs.append([i, i + 1, block.adain.channels])
        rows = [2 * (end - first) * channels for first, end, channels in runs]
        weights, biases = zip(*(block.adain.affine_parts() for block in self.blocks))
        weight_runs = torch.cat([t for pair in weights for t in pair]).split(rows)  # (Σ 2 C, w_dim), blocks in order
        skipped = [block.conv.bias for block in self.blocks if _skips_conv_bias(block)]
        bias_runs = torch.cat([t for pair in biases for t in pair] + skipped).split(
            rows + [sum(bias.numel() for bias in skipped)])
        ws_runs = ws.repeat_interleave(2, dim=1).transpose(0, 1).split(
            [2 * (end - first) for first, end, _ in runs])  # (2 blocks, N, w_dim) each
        styles = []
        for (_, _, channels), weight, bias, ws_run in zip(runs, weight_runs, bias_runs, ws_runs):
            out = torch.baddbmm(bias.view(-1, 1, channels), ws_run,
                                weight.view(-1, channels, self.w_dim).transpose(1, 2))  # (2 blocks, N, C)
            halves = out.unbind(0)  # scale, bias, scale, bias, ...
            styles += list(zip(halves[0::2], halves[1::2]))
        return styles

    def forward(self, z, *, truncation_psi=1.0, truncation_cutoff=None, mix_z=None, crossover=None,
                noise_mode="random"):
        ws = self.map(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                      mix_z=mix_z, crossover=crossover)
        return self.synthesize(ws, noise_mode=noise_mode)
