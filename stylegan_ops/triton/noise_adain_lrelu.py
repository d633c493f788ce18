"""Triton kernels of noise_adain_lrelu, forward and backward, in two families chosen by x's layout.

The math and the backward derivation are in stylegan_ops/ops/noise_adain_lrelu.py.

Planes contiguous (NCHW): one program per (n, c) plane. A plane that fits one block (M = H*W <=
MAX_SINGLE_BLOCK) is loaded once and kept in registers; larger planes are swept in BLOCK-sized
chunks, statistics merged chunk by chunk with Chan's parallel formula (stable under a large
common offset), then swept again to write.

Channels innermost (channels_last): one program per (n, block of BLOCK_C channels), sweeping
[BLOCK_P pixels x BLOCK_C channels] tiles whose rows are contiguous, twice. Statistics are sums
of d = v - K, K each plane's first element ("shifted data": a large common offset does not
cancel catastrophically).

Sums reduce in a fixed order: same inputs, bitwise the same outputs.
"""

import torch
import triton
import triton.language as tl

from stylegan_ops.ops._layout import output_memory_format
from stylegan_ops.ops.noise_adain_lrelu import stats_dtype
from stylegan_ops.triton import autotune_on_gpu, interpreted

MAX_SINGLE_BLOCK = 4096  # elements a program keeps in registers (fp32: 16 KiB)
CHUNK = 2048


@triton.jit
def _inverse_std(variance, eps):
    """1 / sqrt(variance + eps), and 0 when both are 0: PyTorch's batch_norm (so instance_norm)
    normalises a constant plane to 0 then, not to 0 / 0."""
    return tl.where((variance == 0) & (eps == 0), 0.0, 1.0 / tl.sqrt(variance + eps))


@triton.jit
def _load_v(x_plane, noise_plane, a, offs, mask, x_hw, noise_hw, HAS_NOISE: tl.constexpr, ACC: tl.constexpr):
    """v = x + a * noise for one chunk of a plane, in the accumulation dtype (0 where masked)."""
    v = tl.load(x_plane + offs * x_hw, mask=mask, other=0.0).to(ACC)
    if HAS_NOISE:
        v += a * tl.load(noise_plane + offs * noise_hw, mask=mask, other=0.0).to(ACC)
    return v


@triton.jit
def _forward_kernel(
    X, NOISE, A, SCALE, BIAS, Y, MEAN, RSTD,
    C, M, x_n, x_c, x_hw, noise_n, noise_hw, y_n, y_c, y_hw,
    eps, slope,
    HAS_NOISE: tl.constexpr, SINGLE_BLOCK: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):
    plane = tl.program_id(0).to(tl.int64)
    n, c = plane // C, plane % C
    x_plane = X + n * x_n + c * x_c
    noise_plane = NOISE + n * noise_n
    y_plane = Y + n * y_n + c * y_c
    a = 0.0
    if HAS_NOISE:
        a = tl.load(A + c).to(ACC)
    gamma = tl.load(SCALE + plane).to(ACC)
    beta = tl.load(BIAS + plane).to(ACC)
    offs = tl.arange(0, BLOCK)
    if SINGLE_BLOCK:
        mask = offs < M
        v = _load_v(x_plane, noise_plane, a, offs, mask, x_hw, noise_hw, HAS_NOISE, ACC)
        mean = tl.sum(v, axis=0) / M
        dev = tl.where(mask, v - mean, 0.0)
        rstd = _inverse_std(tl.sum(dev * dev, axis=0) / M, eps)
        z = dev * (gamma * rstd) + beta
        tl.store(y_plane + offs * y_hw, tl.where(z > 0, z, z * slope).to(Y.dtype.element_ty), mask=mask)
    else:
        count = tl.zeros((), ACC)
        mean = tl.zeros((), ACC)
        m2 = tl.zeros((), ACC)
        for start in range(0, M, BLOCK):
            mask = start + offs < M
            v = _load_v(x_plane, noise_plane, a, start + offs, mask, x_hw, noise_hw, HAS_NOISE, ACC)
            chunk_count = tl.minimum(M - start, BLOCK).to(ACC)
            chunk_mean = tl.sum(v, axis=0) / chunk_count
            dev = tl.where(mask, v - chunk_mean, 0.0)
            delta = chunk_mean - mean
            total = count + chunk_count
            mean += delta * (chunk_count / total)
            m2 += tl.sum(dev * dev, axis=0) + delta * delta * (count * chunk_count / total)
            count = total
        rstd = _inverse_std(m2 / M, eps)
        for start in range(0, M, BLOCK):
            mask = start + offs < M
            v = _load_v(x_plane, noise_plane, a, start + offs, mask, x_hw, noise_hw, HAS_NOISE, ACC)
            z = (v - mean) * (gamma * rstd) + beta
            tl.store(y_plane + (start + offs) * y_hw, tl.where(z > 0, z, z * slope).to(Y.dtype.element_ty), mask=mask)
    tl.store(MEAN + plane, mean)
    tl.store(RSTD + plane, rstd)


@triton.jit
def _grad_terms(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, offs, mask,
                x_hw, noise_hw, gy_hw, HAS_NOISE: tl.constexpr, ACC: tl.constexpr):
    """(x̂, g) for one chunk: the normalised input and the gradient through the LeakyReLU."""
    xhat = (_load_v(x_plane, noise_plane, a, offs, mask, x_hw, noise_hw, HAS_NOISE, ACC) - mean) * rstd
    xhat = tl.where(mask, xhat, 0.0)
    dy = tl.load(gy_plane + offs * gy_hw, mask=mask, other=0.0).to(ACC)
    g = tl.where(gamma * xhat + beta > 0, dy, dy * slope)
    return xhat, g


@triton.jit
def _backward_kernel(
    GY, X, NOISE, A, SCALE, BIAS, MEAN, RSTD, GX, GA, GSCALE, GBIAS,
    C, M, gy_n, gy_c, gy_hw, x_n, x_c, x_hw, noise_n, noise_hw, gx_n, gx_c, gx_hw,
    slope,
    HAS_NOISE: tl.constexpr, SINGLE_BLOCK: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):
    plane = tl.program_id(0).to(tl.int64)
    n, c = plane // C, plane % C
    x_plane = X + n * x_n + c * x_c
    gy_plane = GY + n * gy_n + c * gy_c
    gx_plane = GX + n * gx_n + c * gx_c
    noise_plane = NOISE + n * noise_n
    a = 0.0
    if HAS_NOISE:
        a = tl.load(A + c).to(ACC)
    gamma = tl.load(SCALE + plane).to(ACC)
    beta = tl.load(BIAS + plane).to(ACC)
    mean = tl.load(MEAN + plane)
    rstd = tl.load(RSTD + plane)
    offs = tl.arange(0, BLOCK)
    if SINGLE_BLOCK:
        mask = offs < M
        xhat, g = _grad_terms(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, offs, mask,
                              x_hw, noise_hw, gy_hw, HAS_NOISE, ACC)
        sum_g = tl.sum(g, axis=0)
        sum_g_xhat = tl.sum(g * xhat, axis=0)
        dv = (gamma * rstd) * (g - sum_g / M - xhat * (sum_g_xhat / M))
        tl.store(gx_plane + offs * gx_hw, dv.to(GX.dtype.element_ty), mask=mask)
        if HAS_NOISE:
            noise = tl.load(noise_plane + offs * noise_hw, mask=mask, other=0.0).to(ACC)
            tl.store(GA + plane, tl.sum(tl.where(mask, dv, 0.0) * noise, axis=0))
    else:
        acc_g = tl.zeros((BLOCK,), ACC)
        acc_g_xhat = tl.zeros((BLOCK,), ACC)
        for start in range(0, M, BLOCK):
            mask = start + offs < M
            xhat, g = _grad_terms(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, start + offs,
                                  mask, x_hw, noise_hw, gy_hw, HAS_NOISE, ACC)
            acc_g += g
            acc_g_xhat += g * xhat
        sum_g = tl.sum(acc_g, axis=0)
        sum_g_xhat = tl.sum(acc_g_xhat, axis=0)
        acc_dv_noise = tl.zeros((BLOCK,), ACC)
        for start in range(0, M, BLOCK):
            mask = start + offs < M
            xhat, g = _grad_terms(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, start + offs,
                                  mask, x_hw, noise_hw, gy_hw, HAS_NOISE, ACC)
            dv = (gamma * rstd) * (g - sum_g / M - xhat * (sum_g_xhat / M))
            tl.store(gx_plane + (start + offs) * gx_hw, dv.to(GX.dtype.element_ty), mask=mask)
            if HAS_NOISE:
                noise = tl.load(noise_plane + (start + offs) * noise_hw, mask=mask, other=0.0).to(ACC)
                acc_dv_noise += tl.where(mask, dv, 0.0) * noise
        if HAS_NOISE:
            tl.store(GA + plane, tl.sum(acc_dv_noise, axis=0))
    tl.store(GSCALE + plane, sum_g_xhat.to(GSCALE.dtype.element_ty))
    tl.store(GBIAS + plane, sum_g.to(GBIAS.dtype.element_ty))


# ---- channels innermost ------------------------------------------------------------------------
# Plane pointers are (1, BLOCK_C) rows and pixel offsets (BLOCK_P, 1) columns, so _load_v and
# _grad_terms work on whole tiles by broadcasting; noise rows repeat one pointer per channel.
@triton.jit
def _channel_block(X, NOISE, A, SCALE, BIAS, C, x_n, x_c, noise_n,
                   HAS_NOISE: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """This program's sample n and channels c (c_ok: c < C) with their planes (n * C + c), and as
    (1, BLOCK_C) rows: x and noise plane pointers, noise weight, style scale and bias."""
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    plane = n * C + c
    x_plane = (X + n * x_n + c.to(tl.int64) * x_c)[None, :]
    noise_plane = (NOISE + n * noise_n + 0 * c)[None, :]
    a = tl.zeros((1, BLOCK_C), ACC)
    if HAS_NOISE:
        a = tl.load(A + c, mask=c_ok, other=0.0).to(ACC)[None, :]
    gamma = tl.load(SCALE + plane, mask=c_ok, other=0.0).to(ACC)[None, :]
    beta = tl.load(BIAS + plane, mask=c_ok, other=0.0).to(ACC)[None, :]
    return n, c, c_ok, plane, x_plane, noise_plane, a, gamma, beta


@triton.jit
def _channel_forward_kernel(
    X, NOISE, A, SCALE, BIAS, Y, MEAN, RSTD,
    C, M, x_n, x_c, x_hw, noise_n, noise_hw, y_n, y_c, y_hw,
    eps, slope,
    HAS_NOISE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr,
):
    n, c, c_ok, plane, x_plane, noise_plane, a, gamma, beta = _channel_block(
        X, NOISE, A, SCALE, BIAS, C, x_n, x_c, noise_n, HAS_NOISE, BLOCK_C, ACC)
    y_plane = (Y + n * y_n + c.to(tl.int64) * y_c)[None, :]
    offs = tl.arange(0, BLOCK_P)[:, None]
    shift = _load_v(x_plane, noise_plane, a, tl.zeros((1, 1), tl.int32), c_ok[None, :], x_hw, noise_hw, HAS_NOISE, ACC)
    total = tl.zeros((BLOCK_C,), ACC)
    squares = tl.zeros((BLOCK_C,), ACC)
    for start in range(0, M, BLOCK_P):
        mask = (start + offs < M) & c_ok[None, :]
        v = _load_v(x_plane, noise_plane, a, start + offs, mask, x_hw, noise_hw, HAS_NOISE, ACC)
        d = tl.where(mask, v - shift, 0.0)
        total += tl.sum(d, axis=0)
        squares += tl.sum(d * d, axis=0)
    mean_d = total / M
    rstd = _inverse_std(tl.maximum(squares / M - mean_d * mean_d, 0.0), eps)
    for start in range(0, M, BLOCK_P):
        mask = (start + offs < M) & c_ok[None, :]
        v = _load_v(x_plane, noise_plane, a, start + offs, mask, x_hw, noise_hw, HAS_NOISE, ACC)
        z = (v - shift - mean_d[None, :]) * (gamma * rstd[None, :]) + beta
        tl.store(y_plane + (start + offs) * y_hw, tl.where(z > 0, z, z * slope).to(Y.dtype.element_ty), mask=mask)
    tl.store(MEAN + plane, tl.sum(shift, axis=0) + mean_d, mask=c_ok)
    tl.store(RSTD + plane, rstd, mask=c_ok)


@triton.jit
def _channel_backward_kernel(
    GY, X, NOISE, A, SCALE, BIAS, MEAN, RSTD, GX, GA, GSCALE, GBIAS,
    C, M, gy_n, gy_c, gy_hw, x_n, x_c, x_hw, noise_n, noise_hw, gx_n, gx_c, gx_hw,
    slope,
    HAS_NOISE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr,
):
    n, c, c_ok, plane, x_plane, noise_plane, a, gamma, beta = _channel_block(
        X, NOISE, A, SCALE, BIAS, C, x_n, x_c, noise_n, HAS_NOISE, BLOCK_C, ACC)
    gy_plane = (GY + n * gy_n + c.to(tl.int64) * gy_c)[None, :]
    gx_plane = (GX + n * gx_n + c.to(tl.int64) * gx_c)[None, :]
    mean = tl.load(MEAN + plane, mask=c_ok, other=0.0)[None, :]
    rstd = tl.load(RSTD + plane, mask=c_ok, other=0.0)[None, :]
    offs = tl.arange(0, BLOCK_P)[:, None]
    sum_g = tl.zeros((BLOCK_C,), ACC)
    sum_g_xhat = tl.zeros((BLOCK_C,), ACC)
    for start in range(0, M, BLOCK_P):
        mask = (start + offs < M) & c_ok[None, :]
        xhat, g = _grad_terms(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, start + offs, mask,
                              x_hw, noise_hw, gy_hw, HAS_NOISE, ACC)
        sum_g += tl.sum(g, axis=0)
        sum_g_xhat += tl.sum(g * xhat, axis=0)
    k_scale = gamma * rstd
    mean_g, mean_g_xhat = (sum_g / M)[None, :], (sum_g_xhat / M)[None, :]
    dv_noise = tl.zeros((BLOCK_C,), ACC)
    for start in range(0, M, BLOCK_P):
        mask = (start + offs < M) & c_ok[None, :]
        xhat, g = _grad_terms(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, start + offs, mask,
                              x_hw, noise_hw, gy_hw, HAS_NOISE, ACC)
        dv = k_scale * (g - mean_g - xhat * mean_g_xhat)
        tl.store(gx_plane + (start + offs) * gx_hw, dv.to(GX.dtype.element_ty), mask=mask)
        if HAS_NOISE:
            noise = tl.load(noise_plane + (start + offs) * noise_hw, mask=mask, other=0.0).to(ACC)
            dv_noise += tl.sum(tl.where(mask, dv, 0.0) * noise, axis=0)
    if HAS_NOISE:
        tl.store(GA + plane, dv_noise, mask=c_ok)
    tl.store(GSCALE + plane, sum_g_xhat.to(GSCALE.dtype.element_ty), mask=c_ok)
    tl.store(GBIAS + plane, sum_g.to(GBIAS.dtype.element_ty), mask=c_ok)


# ---- launchers ------------------------------------------------------------------------------------
def _with_collapsible_hw(t):
    """t itself if its H and W collapse into one strided index, else a contiguous copy."""
    h, w = t.shape[2], t.shape[3]
    return t if h == 1 or w == 1 or t.stride(2) == t.stride(3) * w else t.contiguous()


def _plane_strides(t):
    """(n, c, hw) strides of t seen as N x C planes of H*W elements."""
    return t.stride(0), t.stride(1), t.stride(2) if t.shape[3] == 1 else t.stride(3)


_IN_INTERPRETER = interpreted(_forward_kernel)

# On GPU the launch is autotuned per plane size M: warps for a register-resident plane, chunk
# and warps for a swept one. The interpreter (CPU tests), and GPU runs with autotuning switched
# off (stylegan_ops.triton.autotune_on_gpu), run the heuristic config in _launch.
_SINGLE_BLOCK_CONFIGS = [triton.Config({}, num_warps=w) for w in (1, 2, 4, 8, 16)]
_CHUNKED_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w) for b in (1024, 2048, 4096) for w in (4, 8, 16)]
_AUTOTUNED = {
    (kernel, single): triton.autotune(_SINGLE_BLOCK_CONFIGS if single else _CHUNKED_CONFIGS, key=["M"])(kernel)
    for kernel in (_forward_kernel, _backward_kernel)
    for single in (True, False)
}


def _launch(kernel, m, grid, *args, **kwargs):
    """kernel[grid](*args, **kwargs) with SINGLE_BLOCK, BLOCK and num_warps chosen for planes of m elements."""
    single = m <= MAX_SINGLE_BLOCK
    if not _IN_INTERPRETER and autotune_on_gpu():
        block = dict(BLOCK=triton.next_power_of_2(m)) if single else {}  # chunked: BLOCK is autotuned
        _AUTOTUNED[(kernel, single)][grid](*args, **kwargs, SINGLE_BLOCK=single, **block)
    else:
        block = triton.next_power_of_2(m) if single else CHUNK
        kernel[grid](*args, **kwargs, SINGLE_BLOCK=single, BLOCK=block, num_warps=max(1, min(16, block // 256)))


# Channel-major tiles: autotuned per (M, C) on GPU; the interpreter, and GPU runs with autotuning
# switched off, use the first config that fits.
_CHANNEL_CONFIGS = [triton.Config({"BLOCK_P": p, "BLOCK_C": c}, num_warps=w)
                    for p, c, w in [(64, 32, 4), (128, 32, 4), (32, 64, 4), (64, 64, 8)]]
_CHANNEL_INTERPRETER_CONFIG = triton.Config({"BLOCK_P": 16, "BLOCK_C": 16})
_CHANNEL_AUTOTUNED = {kernel: triton.autotune(_CHANNEL_CONFIGS, key=["M", "C"])(kernel)
                      for kernel in (_channel_forward_kernel, _channel_backward_kernel)}


def _channels_innermost(x):
    return x.shape[1] > 1 and x.stride(1) == 1


def _launch_channels(kernel, n, c, *args, **kwargs):
    """kernel over a (n, channel block) grid with BLOCK_P, BLOCK_C and num_warps chosen as above."""
    grid = lambda meta: (n, triton.cdiv(c, meta["BLOCK_C"]))  # noqa: E731
    if not _IN_INTERPRETER and autotune_on_gpu():
        _CHANNEL_AUTOTUNED[kernel][grid](*args, **kwargs)
        return
    config = _CHANNEL_INTERPRETER_CONFIG if _IN_INTERPRETER else _CHANNEL_CONFIGS[0]
    kernel[grid(config.kwargs)](*args, **kwargs, **config.kwargs, num_warps=config.num_warps)


def _acc(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def forward(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope):
    x = _with_collapsible_hw(x)
    n, c, h, w = x.shape
    y = torch.empty_like(x, memory_format=output_memory_format(x))
    mean = torch.empty((n, c), device=x.device, dtype=stats_dtype(x.dtype))
    rstd = torch.empty_like(mean)
    has_noise = noise is not None
    noise = _with_collapsible_hw(noise) if has_noise else x  # x: a placeholder pointer, never read
    noise_n, _, noise_hw = _plane_strides(noise)
    args = (x, noise, noise_weight.contiguous(), style_scale.contiguous(), style_bias.contiguous(), y, mean, rstd,
            c, h * w, *_plane_strides(x), noise_n, noise_hw, *_plane_strides(y), eps, negative_slope)
    options = dict(HAS_NOISE=has_noise, ACC=_acc(x.dtype))
    if _channels_innermost(x):
        _launch_channels(_channel_forward_kernel, n, c, *args, **options)
    else:
        _launch(_forward_kernel, h * w, (n * c,), *args, **options)
    return y, mean, rstd


def backward(grad_y, x, noise, noise_weight, style_scale, style_bias, mean, rstd, negative_slope):
    x, grad_y = _with_collapsible_hw(x), _with_collapsible_hw(grad_y)
    n, c, h, w = x.shape
    grad_x = torch.empty_like(x, memory_format=output_memory_format(x))
    grad_a = torch.zeros((n, c), device=x.device, dtype=mean.dtype)
    grad_scale = torch.empty((n, c), device=x.device, dtype=x.dtype)
    grad_bias = torch.empty_like(grad_scale)
    has_noise = noise is not None
    noise = _with_collapsible_hw(noise) if has_noise else x  # placeholder pointer, never read
    noise_n, _, noise_hw = _plane_strides(noise)
    args = (grad_y, x, noise, noise_weight.contiguous(), style_scale.contiguous(), style_bias.contiguous(),
            mean.contiguous(), rstd.contiguous(), grad_x, grad_a, grad_scale, grad_bias,
            c, h * w, *_plane_strides(grad_y), *_plane_strides(x), noise_n, noise_hw, *_plane_strides(grad_x),
            negative_slope)
    options = dict(HAS_NOISE=has_noise, ACC=_acc(x.dtype))
    if _channels_innermost(x):
        _launch_channels(_channel_backward_kernel, n, c, *args, **options)
    else:
        _launch(_backward_kernel, h * w, (n * c,), *args, **options)
    return grad_x, grad_a.sum(dim=0).to(x.dtype), grad_scale, grad_bias
