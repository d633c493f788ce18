"""Oracles for the tests, independent of the package under test.

* The seed tutorial's modules, transcribed as written (comments dropped), to check that
  state_dicts and outputs carry over.
* A plain reference function per op, written from DESIGN.md's formulas with explicit
  mean/variance, not from the package's eager backend.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode


# ---- the seed's modules --------------------------------------------------------------------
class SeedMappingNetwork(nn.Module):
    def __init__(self, z_dim, w_dim, num_layers=8):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_layers = num_layers
        layers = []
        current_dim = z_dim
        for i in range(num_layers):
            layers.append(nn.Linear(current_dim, w_dim))
            layers.append(nn.LeakyReLU(0.2))
            current_dim = w_dim
        self.network = nn.Sequential(*layers)

    def forward(self, z):
        w = self.network(z)
        return w


class SeedAdaIN(nn.Module):
    def __init__(self, channels, w_dim):
        super().__init__()
        self.channels = channels
        self.w_dim = w_dim
        self.instance_norm = nn.InstanceNorm2d(channels, affine=False)
        self.style_scale_transform = nn.Linear(w_dim, channels)
        self.style_bias_transform = nn.Linear(w_dim, channels)

    def forward(self, x, w):
        normalized_x = self.instance_norm(x)
        style_scale = self.style_scale_transform(w)
        style_bias = self.style_bias_transform(w)
        style_scale = style_scale.view(-1, self.channels, 1, 1)
        style_bias = style_bias.view(-1, self.channels, 1, 1)
        transformed_x = style_scale * normalized_x + style_bias
        return transformed_x


class SeedNoiseInjection(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x, noise=None):
        if noise is None:
            batch, _, height, width = x.shape
            noise = torch.randn(batch, 1, height, width, device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class SeedSynthesisBlock(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, use_upsample=True):
        super().__init__()
        self.use_upsample = use_upsample
        if self.use_upsample:
            self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.noise_injection = SeedNoiseInjection(out_channels)
        self.adain = SeedAdaIN(out_channels, w_dim)
        self.activation = nn.LeakyReLU(0.2)

    def forward(self, x, w, noise=None):
        if self.use_upsample:
            x = self.upsample(x)
        x = self.conv(x)
        x = self.noise_injection(x, noise=noise)
        x = self.adain(x, w)
        x = self.activation(x)
        return x


# ---- plain reference functions ---------------------------------------------------------------
def noise_adain_lrelu_reference(x, noise, noise_weight, style_scale, style_bias, eps=1e-5, negative_slope=0.2):
    """DESIGN.md §1, term by term."""
    v = x if noise is None else x + noise_weight.reshape(1, -1, 1, 1) * noise
    mean = v.mean(dim=(2, 3), keepdim=True)
    var = (v - mean).square().mean(dim=(2, 3), keepdim=True)  # biased
    n = (v - mean) / torch.sqrt(var + eps)
    z = style_scale[:, :, None, None] * n + style_bias[:, :, None, None]
    return torch.where(z >= 0, z, negative_slope * z)


def upsample_conv2d_reference(x, weight, bias=None):
    """Nearest 2x by repeat_interleave, then a 3x3 convolution with zero padding 1."""
    upsampled = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return F.conv2d(upsampled, weight, bias, padding=1)


def assert_grad_weight_skips_the_padding(grad_weight_of, x, weight, grad_tol):
    """grad_weight_of(grad_y) -> upsample_conv2d's weight gradient sums over x's pixels only, the
    zero padding skipped (as oneDNN's float32 convolution does; its float64 one multiplies it), so
    a non-finite dy on the border meets no 0. With +inf in dy's last row for output channel 3 and
    -inf in its last column for channel 5: the taps of filter row 2 (column 2) read that row
    (column) only where x is padding, so channel 3's row-2 taps (5's column-2 taps) are those of
    the same dy without its infinities; every other tap of the two is non-finite; the rest of the
    gradient is as before."""
    n, _, h, w = x.shape
    grad_y = torch.randn(n, weight.shape[0], 2 * h, 2 * w, dtype=x.dtype).to(x.device)
    with_inf = grad_y.clone()
    with_inf[:, 3, -1, :] = math.inf
    with_inf[:, 5, :, -1] = -math.inf
    finite_dy = with_inf.nan_to_num(posinf=0.0, neginf=0.0)
    got = grad_weight_of(with_inf).cpu()
    wide = x.detach().cpu().double(), weight.detach().cpu().double().requires_grad_()
    want = torch.autograd.grad(upsample_conv2d_reference(*wide), wide[1], finite_dy.cpu().double())[0]
    non_finite = torch.zeros(weight.shape, dtype=torch.bool)
    non_finite[3, :, :2, :] = non_finite[5, :, :, :2] = True
    assert torch.equal(~got.isfinite(), non_finite)
    assert rel_l2(got[~non_finite], want[~non_finite]) < grad_tol


def assert_only_asked_gradients(output_mask, partial, full, bias_rtol):
    """upsample_conv2d_backward's gradients for output_mask (``partial``) against those for all three
    (``full``): one not asked for is empty; dx and d weight are bitwise the same; d bias agrees
    within bias_rtol, its sum taken in another order when no GEMM gradient is asked for (the GPU
    backends then sum dy alone, else alongside its window means)."""
    for name, asked, got, want in zip(("grad_x", "grad_weight", "grad_bias"), output_mask, partial, full):
        if not asked:
            assert got.numel() == 0, name
        elif name == "grad_bias":
            torch.testing.assert_close(got, want, rtol=bias_rtol, atol=0)
        else:
            assert torch.equal(got, want), name


class OpCalls(TorchDispatchMode):
    """Records every operator call made under it (ATen's and stylegan_ops' alike) as (op, args, output)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.calls.append((func, args, out))
        return out


def rel_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64, the error measure of DESIGN.md §3; the two may live on
    different devices (a GPU result against a CPU float64 reference), so both go to the CPU."""
    out, ref = out.detach().cpu().double(), ref.detach().cpu().double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def output_and_grads(fn, inputs, names, wrt, grad_y):
    """(fn(*inputs), gradients of the inputs whose names are in ``wrt`` for output gradient grad_y),
    on fresh copies of the inputs (None inputs stay None)."""
    inputs = [t.detach().clone().requires_grad_(name in wrt) if t is not None else None for name, t in zip(names, inputs)]
    y = fn(*inputs)
    return y, torch.autograd.grad(y, [t for name, t in zip(names, inputs) if name in wrt], grad_y)


def assert_matches_reference(fn, reference_fn, inputs, names, grad_y, ref_dtype, fwd_tol, grad_tol):
    """fn's output and the gradients of every named input, in the inputs' dtype, within the relative
    L2 tolerances of reference_fn run on the inputs and grad_y cast to ref_dtype; returns (y, grads)."""
    dtype = inputs[0].dtype
    y, got = output_and_grads(fn, inputs, names, names, grad_y)
    wide = [t.to(ref_dtype) if t is not None else None for t in inputs]
    y_ref, want = output_and_grads(reference_fn, wide, names, names, grad_y.to(ref_dtype))
    assert y.dtype == dtype and rel_l2(y, y_ref) < fwd_tol
    for name, g, r in zip(names, got, want):
        assert g.dtype == dtype and rel_l2(g, r) < grad_tol, name
    return y, got


def assert_never_waits_for_gpu(fn, inputs, grad_y):
    """fn's forward and backward on CUDA make no call that blocks the CPU until the GPU catches up
    (``torch.cuda.set_sync_debug_mode("error")`` raises on any), once a first call has compiled and
    autotuned (which do wait). A hidden wait would stall every training step's CPU on its GPU."""
    inputs = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    wrt = [t for t in inputs if t is not None]

    def step():
        torch.autograd.grad(fn(*inputs), wrt, grad_y)

    step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


# ---- layouts ---------------------------------------------------------------------------------
def _channels_last_slice(t):
    """t's values as channels 1..C of a channels_last tensor with C + 2 channels: not contiguous in
    any format, but strided like channels_last (as torch.chunk of a channels_last activation)."""
    n, c, h, w = t.shape
    wide = t.new_zeros(n, c + 2, h, w).contiguous(memory_format=torch.channels_last)
    wide[:, 1:c + 1] = t
    return wide[:, 1:c + 1]


# name -> (same values in that layout, the memory format PyTorch reads from its strides).
LAYOUTS = {
    "contiguous": (lambda t: t.contiguous(), torch.contiguous_format),
    "channels_last": (lambda t: t.contiguous(memory_format=torch.channels_last), torch.channels_last),
    "channels_last_slice": (_channels_last_slice, torch.channels_last),
    "nhcw": (lambda t: t.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3), torch.contiguous_format),
}
