"""Triton kernels of noise_adain_lrelu, forward and backward.

The math and the backward derivation are in stylegan_ops/ops/noise_adain_lrelu.py.

NCHW planes of M = H*W <= MAX_SINGLE_BLOCK elements: one program per (n, c) plane, loaded once
and kept in registers; two-pass statistics.

Everything else goes over pixel ranges, as the CUDA kernels' split planes do: programs over
(n, BLOCK_C channels, one of S pixel ranges), each sweeping [BLOCK_P pixels x BLOCK_C channels]
tiles. NCHW takes BLOCK_C = 1 (a tile is a contiguous run of one plane), channels_last a 128-byte
row of channels (a tile is contiguous rows). S is chosen so that even a few large planes (a
1024x1024 level of the generator has 16 or 32 channels) fill the GPU. Each pass takes two
kernels: the first writes per-range sums, the second merges them in range order and makes its
output, so x (and dy) are read twice. Where a plane is one range (S = 1: the generator's levels
up to 16x16 in channels_last) the second kernel makes the sums itself (ONE_RANGE): one launch,
which is most of the time of such a call. The forward's statistics are sums of d = v - K and d²
in float64, K each plane's first element, a tile's float summary at a time: as the CUDA kernels'
(ShiftedSum and add_chunk in csrc/cuda/noise_adain_lrelu_kernel.cu, which say why), the shift
bounds the variance's cancellation and float64 absorbs it, where float32 sums lost up to 3.6e-4
of relative error to a first pixel 1000 out (interpreter).

The noise's gradient, a sum across planes that the kernels above keep apart, is a kernel of its
own (only for a noise that requires grad): programs over (n, BLOCK_P pixels) read dx once more.

Sums reduce in a fixed order: same inputs, bitwise the same outputs.
"""

import torch
import triton
import triton.language as tl

from stylegan_ops.ops._dtypes import accumulation_dtype
from stylegan_ops.ops._layout import output_memory_format
from stylegan_ops.triton import (autotune, autotune_on_gpu, cdiv, interpreted, launch_autotuned, multiprocessor_count,
                                  next_power_of_2, on_inputs_device, tl_accumulation_dtype)

MAX_SINGLE_BLOCK = 4096  # elements a program keeps in registers (fp32: 16 KiB)


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
    HAS_NOISE: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):
    """One (n, c) plane of M <= BLOCK elements, read once: two-pass statistics in registers."""
    plane = tl.program_id(0).to(tl.int64)
    n, c = plane // C, plane % C
    a = 0.0
    if HAS_NOISE:
        a = tl.load(A + c).to(ACC)
    gamma = tl.load(SCALE + plane).to(ACC)
    beta = tl.load(BIAS + plane).to(ACC)
    offs = tl.arange(0, BLOCK)
    mask = offs < M
    v = _load_v(X + n * x_n + c * x_c, NOISE + n * noise_n, a, offs, mask, x_hw, noise_hw, HAS_NOISE, ACC)
    mean = tl.sum(v, axis=0) / M
    dev = tl.where(mask, v - mean, 0.0)
    rstd = _inverse_std(tl.sum(dev * dev, axis=0) / M, eps)
    z = dev * (gamma * rstd) + beta
    tl.store(Y + n * y_n + c * y_c + offs * y_hw, tl.where(z > 0, z, z * slope).to(Y.dtype.element_ty), mask=mask)
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
    HAS_NOISE: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr,
):
    """One (n, c) plane of M <= BLOCK elements, x and dy read once."""
    plane = tl.program_id(0).to(tl.int64)
    n, c = plane // C, plane % C
    noise_plane = NOISE + n * noise_n
    a = 0.0
    if HAS_NOISE:
        a = tl.load(A + c).to(ACC)
    gamma = tl.load(SCALE + plane).to(ACC)
    beta = tl.load(BIAS + plane).to(ACC)
    rstd = tl.load(RSTD + plane)
    offs = tl.arange(0, BLOCK)
    mask = offs < M
    xhat, g = _grad_terms(X + n * x_n + c * x_c, noise_plane, GY + n * gy_n + c * gy_c, a, tl.load(MEAN + plane),
                          rstd, gamma, beta, slope, offs, mask, x_hw, noise_hw, gy_hw, HAS_NOISE, ACC)
    sum_g = tl.sum(g, axis=0)
    sum_g_xhat = tl.sum(g * xhat, axis=0)
    dv = (gamma * rstd) * (g - sum_g / M - xhat * (sum_g_xhat / M))
    tl.store(GX + n * gx_n + c * gx_c + offs * gx_hw, dv.to(GX.dtype.element_ty), mask=mask)
    dv_noise = 0.0  # stored without noise too: the launcher's buffer needs no zero fill
    if HAS_NOISE:
        noise = tl.load(noise_plane + offs * noise_hw, mask=mask, other=0.0).to(ACC)
        dv_noise = tl.sum(tl.where(mask, dv, 0.0) * noise, axis=0)
    tl.store(GA + plane, dv_noise)
    tl.store(GSCALE + plane, sum_g_xhat.to(GSCALE.dtype.element_ty))
    tl.store(GBIAS + plane, sum_g.to(GBIAS.dtype.element_ty))


# ---- pixel ranges -------------------------------------------------------------------------------
# Programs over (n, BLOCK_C channels, pixel range): grid (N, cdiv(C, BLOCK_C), S). Plane pointers
# are (1, BLOCK_C) rows and pixel offsets (BLOCK_P, 1) columns, so _load_v and _grad_terms work on
# whole [BLOCK_P x BLOCK_C] tiles by broadcasting; noise rows repeat one pointer per channel.
# BLOCK_C = 1 makes a tile one plane's contiguous run of pixels (NCHW), a 128-byte row of channels
# makes it contiguous rows (channels_last). Partial sums live in (S, 2, N*C) buffers, a pair per
# range and plane; the second kernel of each pass merges them in range order (deterministic).
@triton.jit
def _range_block(X, NOISE, A, SCALE, BIAS, C, M, S, x_n, x_c, noise_n,
                 HAS_NOISE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """This program's sample n and channels c (c_ok: c < C) with their planes (n * C + c); as
    (1, BLOCK_C) rows, x and noise plane pointers, noise weight, style scale and bias; and its
    pixels, the program_id(2)-th of S ranges of whole BLOCK_P tiles: `tiles` tiles from `begin`
    (pixels past M masked). Whole tiles keep every tile start a multiple of BLOCK_P, which lets
    Triton prove 16-byte alignment and vectorise NCHW runs; int64, so that a pixel offset times a
    channels_last pixel stride (C) cannot overflow."""
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
    tiles = tl.cdiv(tl.cdiv(M, BLOCK_P), S)
    begin = tl.program_id(2).to(tl.int64) * tiles * BLOCK_P
    return n, c, c_ok, plane, x_plane, noise_plane, a, gamma, beta, begin, tiles


@triton.jit
def _plane_shift(x_plane, noise_plane, a, c_ok, x_hw, noise_hw, HAS_NOISE: tl.constexpr, ACC: tl.constexpr):
    """K, each plane's first v, in float64 (BLOCK_C,): the shift of the statistics' sums."""
    first = _load_v(x_plane, noise_plane, a, tl.zeros((1, 1), tl.int32), c_ok[None, :], x_hw, noise_hw, HAS_NOISE, ACC)
    return tl.sum(first, axis=0).to(tl.float64)  # the (1, BLOCK_C) row as a vector


@triton.jit
def _tile(begin, t, M, c_ok, BLOCK_P: tl.constexpr):
    """The pixels of this range's t-th tile, a (BLOCK_P, 1) column, and the tile's mask."""
    pix = begin + t * BLOCK_P + tl.arange(0, BLOCK_P)[:, None]
    return pix, (pix < M) & c_ok[None, :]


@triton.jit
def _store_pair(PARTIAL, plane, c_ok, C, first, second):
    """This range's pair of sums for its planes, into the (S, 2, N*C) partials."""
    planes = tl.num_programs(0) * C
    tl.store(PARTIAL + 2 * tl.program_id(2) * planes + plane, first, mask=c_ok)
    tl.store(PARTIAL + (2 * tl.program_id(2) + 1) * planes + plane, second, mask=c_ok)


@triton.jit
def _merged_pair(PARTIAL, plane, c_ok, C, S, BLOCK_C: tl.constexpr):
    """The pair of sums of this program's planes over all S ranges, added in range order."""
    planes = tl.num_programs(0) * C
    first = tl.zeros((BLOCK_C,), PARTIAL.dtype.element_ty)
    second = tl.zeros((BLOCK_C,), PARTIAL.dtype.element_ty)
    for s in range(0, S):
        first += tl.load(PARTIAL + 2 * s * planes + plane, mask=c_ok, other=0.0)
        second += tl.load(PARTIAL + (2 * s + 1) * planes + plane, mask=c_ok, other=0.0)
    return first, second


@triton.jit
def _grad_rows(GY, MEAN, RSTD, n, c, c_ok, plane, gy_n, gy_c):
    """As (1, BLOCK_C) rows: dy plane pointers and the planes' saved mean and 1/std."""
    gy_plane = (GY + n * gy_n + c.to(tl.int64) * gy_c)[None, :]
    mean = tl.load(MEAN + plane, mask=c_ok, other=0.0)[None, :]
    rstd = tl.load(RSTD + plane, mask=c_ok, other=0.0)[None, :]
    return gy_plane, mean, rstd


@triton.jit
def _range_moments(x_plane, noise_plane, a, shift, c_ok, begin, tiles, M, x_hw, noise_hw,
                   HAS_NOISE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """Σd and Σd² in float64 over this range, d = v - K with K the plane's first v (shift), a tile
    at a time as the CUDA kernels' add_chunk takes a chunk: per channel the tile's float mean m,
    the residual r = Σ(v - m) its rounding leaves and q = Σ(v - m)², then in float64
    Σd = n (m - K) + r and Σd² = q + (m - K) (2 r + n (m - K)) for the tile's n pixels. Float64
    work a tile and channel, not an element."""
    total = tl.zeros((BLOCK_C,), tl.float64)
    squares = tl.zeros((BLOCK_C,), tl.float64)
    for t in range(0, tiles):
        pix, mask = _tile(begin, t, M, c_ok, BLOCK_P)
        v = _load_v(x_plane, noise_plane, a, pix, mask, x_hw, noise_hw, HAS_NOISE, ACC)  # 0 where masked
        count = tl.minimum(tl.maximum(M - (begin + t * BLOCK_P), 0), BLOCK_P)  # the tile's pixels in the plane
        tile_mean = tl.sum(v, axis=0) / tl.maximum(count, 1).to(ACC)
        d = tl.where(mask, v - tile_mean[None, :], 0.0)
        residual = tl.sum(d, axis=0).to(tl.float64)
        offset = tile_mean.to(tl.float64) - shift
        tile_sum = count.to(tl.float64) * offset + residual
        total += tile_sum
        squares += tl.sum(d * d, axis=0).to(tl.float64) + offset * (tile_sum + residual)
    return total, squares


@triton.jit
def _range_stats_kernel(
    X, NOISE, A, SCALE, BIAS, PARTIAL,
    C, M, S, x_n, x_c, x_hw, noise_n, noise_hw,
    HAS_NOISE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr,
):
    """Forward pass 1: Σd and Σd² over this range."""
    n, c, c_ok, plane, x_plane, noise_plane, a, gamma, beta, begin, tiles = _range_block(
        X, NOISE, A, SCALE, BIAS, C, M, S, x_n, x_c, noise_n, HAS_NOISE, BLOCK_P, BLOCK_C, ACC)
    shift = _plane_shift(x_plane, noise_plane, a, c_ok, x_hw, noise_hw, HAS_NOISE, ACC)
    total, squares = _range_moments(x_plane, noise_plane, a, shift, c_ok, begin, tiles, M, x_hw, noise_hw,
                                    HAS_NOISE, BLOCK_P, BLOCK_C, ACC)
    _store_pair(PARTIAL, plane, c_ok, C, total, squares)


@triton.jit
def _range_forward_kernel(
    X, NOISE, A, SCALE, BIAS, PARTIAL, Y, MEAN, RSTD,
    C, M, S, x_n, x_c, x_hw, noise_n, noise_hw, y_n, y_c, y_hw,
    eps, slope,
    HAS_NOISE: tl.constexpr, ONE_RANGE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    ACC: tl.constexpr,
):
    """Forward pass 2: the planes' statistics from every range's sums, then y over this range.
    ONE_RANGE (S = 1): the program sums its planes itself, pass 1 skipped (PARTIAL unread)."""
    n, c, c_ok, plane, x_plane, noise_plane, a, gamma, beta, begin, tiles = _range_block(
        X, NOISE, A, SCALE, BIAS, C, M, S, x_n, x_c, noise_n, HAS_NOISE, BLOCK_P, BLOCK_C, ACC)
    y_plane = (Y + n * y_n + c.to(tl.int64) * y_c)[None, :]
    shift = _plane_shift(x_plane, noise_plane, a, c_ok, x_hw, noise_hw, HAS_NOISE, ACC)
    if ONE_RANGE:
        total, squares = _range_moments(x_plane, noise_plane, a, shift, c_ok, begin, tiles, M, x_hw, noise_hw,
                                        HAS_NOISE, BLOCK_P, BLOCK_C, ACC)
    else:
        total, squares = _merged_pair(PARTIAL, plane, c_ok, C, S, BLOCK_C)
    mean_d = total / M
    variance = squares / M - mean_d * mean_d
    # Rounding can leave a tiny negative; an inf in the plane leaves inf - inf = NaN, kept as in eager
    # (tl.maximum would turn NaN into 0).
    rstd = _inverse_std(tl.where(variance < 0, 0.0, variance), eps).to(ACC)
    # y from v - mean, as the per-plane kernel and the backward (which reads this mean) make x̂.
    mean = (shift + mean_d).to(ACC)
    for t in range(0, tiles):
        pix, mask = _tile(begin, t, M, c_ok, BLOCK_P)
        v = _load_v(x_plane, noise_plane, a, pix, mask, x_hw, noise_hw, HAS_NOISE, ACC)
        z = (v - mean[None, :]) * (gamma * rstd[None, :]) + beta
        tl.store(y_plane + pix * y_hw, tl.where(z > 0, z, z * slope).to(Y.dtype.element_ty), mask=mask)
    if tl.program_id(2) == 0:
        tl.store(MEAN + plane, mean, mask=c_ok)
        tl.store(RSTD + plane, rstd, mask=c_ok)


@triton.jit
def _range_grad_moments(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, c_ok, begin, tiles, M,
                        x_hw, noise_hw, gy_hw, HAS_NOISE: tl.constexpr, BLOCK_P: tl.constexpr,
                        BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """Σg and Σg·x̂ over this range."""
    sum_g = tl.zeros((BLOCK_C,), ACC)
    sum_g_xhat = tl.zeros((BLOCK_C,), ACC)
    for t in range(0, tiles):
        pix, mask = _tile(begin, t, M, c_ok, BLOCK_P)
        xhat, g = _grad_terms(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, pix, mask,
                              x_hw, noise_hw, gy_hw, HAS_NOISE, ACC)
        sum_g += tl.sum(g, axis=0)
        sum_g_xhat += tl.sum(g * xhat, axis=0)
    return sum_g, sum_g_xhat


@triton.jit
def _range_grad_sums_kernel(
    GY, X, NOISE, A, SCALE, BIAS, MEAN, RSTD, PARTIAL,
    C, M, S, gy_n, gy_c, gy_hw, x_n, x_c, x_hw, noise_n, noise_hw,
    slope,
    HAS_NOISE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr,
):
    """Backward pass 1: Σg and Σg·x̂ over this range."""
    n, c, c_ok, plane, x_plane, noise_plane, a, gamma, beta, begin, tiles = _range_block(
        X, NOISE, A, SCALE, BIAS, C, M, S, x_n, x_c, noise_n, HAS_NOISE, BLOCK_P, BLOCK_C, ACC)
    gy_plane, mean, rstd = _grad_rows(GY, MEAN, RSTD, n, c, c_ok, plane, gy_n, gy_c)
    sum_g, sum_g_xhat = _range_grad_moments(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, c_ok,
                                            begin, tiles, M, x_hw, noise_hw, gy_hw, HAS_NOISE, BLOCK_P, BLOCK_C, ACC)
    _store_pair(PARTIAL, plane, c_ok, C, sum_g, sum_g_xhat)


@triton.jit
def _range_backward_kernel(
    GY, X, NOISE, A, SCALE, BIAS, MEAN, RSTD, PARTIAL, GX, GA_PARTIAL, GSCALE, GBIAS,
    C, M, S, gy_n, gy_c, gy_hw, x_n, x_c, x_hw, noise_n, noise_hw, gx_n, gx_c, gx_hw,
    slope,
    HAS_NOISE: tl.constexpr, ONE_RANGE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
    ACC: tl.constexpr,
):
    """Backward pass 2: dv over this range from every range's sums, and this range's Σdv·ξ.
    ONE_RANGE (S = 1): the program sums its planes itself, pass 1 skipped (PARTIAL unread)."""
    n, c, c_ok, plane, x_plane, noise_plane, a, gamma, beta, begin, tiles = _range_block(
        X, NOISE, A, SCALE, BIAS, C, M, S, x_n, x_c, noise_n, HAS_NOISE, BLOCK_P, BLOCK_C, ACC)
    gy_plane, mean, rstd = _grad_rows(GY, MEAN, RSTD, n, c, c_ok, plane, gy_n, gy_c)
    gx_plane = (GX + n * gx_n + c.to(tl.int64) * gx_c)[None, :]
    if ONE_RANGE:
        sum_g, sum_g_xhat = _range_grad_moments(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope,
                                                c_ok, begin, tiles, M, x_hw, noise_hw, gy_hw, HAS_NOISE, BLOCK_P,
                                                BLOCK_C, ACC)
    else:
        sum_g, sum_g_xhat = _merged_pair(PARTIAL, plane, c_ok, C, S, BLOCK_C)
    k_scale = gamma * rstd
    mean_g, mean_g_xhat = (sum_g / M)[None, :], (sum_g_xhat / M)[None, :]
    dv_noise = tl.zeros((BLOCK_C,), ACC)
    for t in range(0, tiles):
        pix, mask = _tile(begin, t, M, c_ok, BLOCK_P)
        xhat, g = _grad_terms(x_plane, noise_plane, gy_plane, a, mean, rstd, gamma, beta, slope, pix, mask,
                              x_hw, noise_hw, gy_hw, HAS_NOISE, ACC)
        dv = k_scale * (g - mean_g - xhat * mean_g_xhat)
        tl.store(gx_plane + pix * gx_hw, dv.to(GX.dtype.element_ty), mask=mask)
        if HAS_NOISE:
            noise = tl.load(noise_plane + pix * noise_hw, mask=mask, other=0.0).to(ACC)
            dv_noise += tl.sum(tl.where(mask, dv, 0.0) * noise, axis=0)
    tl.store(GA_PARTIAL + tl.program_id(2) * tl.num_programs(0) * C + plane, dv_noise, mask=c_ok)  # 0 without noise
    if tl.program_id(2) == 0:
        tl.store(GSCALE + plane, sum_g_xhat.to(GSCALE.dtype.element_ty), mask=c_ok)
        tl.store(GBIAS + plane, sum_g.to(GBIAS.dtype.element_ty), mask=c_ok)


@triton.jit
def _grad_noise_kernel(GX, A, GN, M, C, pixel_blocks, gx_n, gx_c, gx_hw,
                       BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    """dξ[n, p] = Σ_c a_c dx[n, c, p] over BLOCK_P pixels of a sample: [BLOCK_C x BLOCK_P] tiles of dx,
    channel block after channel block, in ACC. The planes' kernels keep them apart, so this reads dx
    again, once: PyTorch's (dx * a).sum(1) took two kernels and an x-sized temporary, and rounded each
    product to dx's dtype."""
    program = tl.program_id(0)
    n = (program // pixel_blocks).to(tl.int64)
    pix = (program % pixel_blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = pix < M
    total = tl.zeros((BLOCK_P,), ACC)
    for c0 in range(0, C, BLOCK_C):
        channels = c0 + tl.arange(0, BLOCK_C)
        c_ok = channels < C
        a = tl.load(A + channels, mask=c_ok, other=0.0).to(ACC)
        dx = tl.load(GX + n * gx_n + channels.to(tl.int64)[:, None] * gx_c + pix.to(tl.int64)[None, :] * gx_hw,
                     mask=c_ok[:, None] & p_ok[None, :], other=0.0).to(ACC)
        total += tl.sum(a[:, None] * dx, axis=0)
    tl.store(GN + n * M + pix, total.to(GN.dtype.element_ty), mask=p_ok)


# ---- launchers ------------------------------------------------------------------------------------
def _with_collapsible_hw(t):
    """t itself if its H and W collapse into one strided index, else a contiguous copy."""
    h, w = t.shape[2], t.shape[3]
    return t if h == 1 or w == 1 or t.stride(2) == t.stride(3) * w else t.contiguous()


def _plane_strides(t):
    """(n, c, hw) strides of t seen as N x C planes of H*W elements."""
    return t.stride(0), t.stride(1), t.stride(2) if t.shape[3] == 1 else t.stride(3)


_IN_INTERPRETER = interpreted(_forward_kernel)

# On GPU, launches autotune: warps per plane size M for the register-resident planes; tile height
# and warps per (M, C, S) for the ranges, whose tile width BLOCK_C the layout fixes. The
# interpreter (CPU tests), and GPU runs with autotuning switched off
# (stylegan_ops.triton.autotune_on_gpu), run one fixed config.
_PLANE_CONFIGS = [triton.Config({}, num_warps=w) for w in (1, 2, 4, 8, 16)]
_PLANE_AUTOTUNED = {kernel: autotune(_PLANE_CONFIGS, key=["M"])(kernel)
                    for kernel in (_forward_kernel, _backward_kernel)}
_RANGE_CONFIGS = {  # by whether tiles are plane runs (BLOCK_C = 1) or channel rows
    True: [triton.Config({"BLOCK_P": p}, num_warps=w)
           for p, w in [(1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16)]],
    False: [triton.Config({"BLOCK_P": p}, num_warps=w) for p, w in [(16, 4), (32, 4), (64, 4), (64, 8), (128, 8)]],
}
_RANGE_FIXED = {True: triton.Config({"BLOCK_P": 2048}, num_warps=8), False: triton.Config({"BLOCK_P": 32}, num_warps=4)}
_RANGE_INTERPRETER = {True: triton.Config({"BLOCK_P": 256}), False: triton.Config({"BLOCK_P": 16})}
_RANGE_KERNELS = (_range_stats_kernel, _range_forward_kernel, _range_grad_sums_kernel, _range_backward_kernel)
_RANGE_AUTOTUNED = {(kernel, runs): autotune(_RANGE_CONFIGS[runs], key=["M", "C", "S"])(kernel)
                    for kernel in _RANGE_KERNELS for runs in (True, False)}
MIN_RANGE = 512  # pixels: no pixel range is made shorter


def _channels_innermost(x):
    return x.shape[1] > 1 and x.stride(1) == 1


def _use_ranges(x):
    """Whether x's planes go to the range kernels: channels_last always (a tile of BLOCK_C channels
    needs strided rows), NCHW planes beyond one register-resident block."""
    return _channels_innermost(x) or x.shape[2] * x.shape[3] > MAX_SINGLE_BLOCK


def _range_split(x):
    """(BLOCK_C, S): channels per program (one plane for NCHW, a 128-byte row for channels_last) and
    pixel ranges per plane: enough programs for about four per SM, no range under MIN_RANGE pixels."""
    n, c, h, w = x.shape
    block_c = 128 // x.element_size() if _channels_innermost(x) else 1
    programs = n * cdiv(c, block_c)
    target = 4 * multiprocessor_count(x.device)
    splits = max(1, min(cdiv(target, programs), h * w // MIN_RANGE, 1024))
    if cdiv(c, block_c) >= 65536:
        raise RuntimeError(f"noise_adain_lrelu (triton): C={c} needs more than 65535 channel blocks of {block_c}")
    return block_c, splits


def _launch_plane(kernel, n, c, m, *args, **kwargs):
    """kernel over one program per plane of m <= MAX_SINGLE_BLOCK elements, held in one block."""
    block = next_power_of_2(m)
    if not _IN_INTERPRETER and autotune_on_gpu():
        launch_autotuned(_PLANE_AUTOTUNED[kernel], (n * c,), *args, **kwargs, BLOCK=block)
    else:
        kernel[(n * c,)](*args, **kwargs, BLOCK=block, num_warps=max(1, min(16, block // 256)))


def _launch_ranges(kernel, n, c, block_c, splits, *args, **kwargs):
    """kernel over the (n, channel block, pixel range) grid with BLOCK_P and num_warps chosen as above."""
    runs = block_c == 1
    grid = (n, cdiv(c, block_c), splits)
    if not _IN_INTERPRETER and autotune_on_gpu():
        launch_autotuned(_RANGE_AUTOTUNED[(kernel, runs)], grid, *args, **kwargs, BLOCK_C=block_c)
        return
    config = (_RANGE_INTERPRETER if _IN_INTERPRETER else _RANGE_FIXED)[runs]
    kernel[grid](*args, **kwargs, **config.kwargs, BLOCK_C=block_c, num_warps=config.num_warps)


# dξ's tiles, one config: the kernel runs only for a noise that requires grad, and a tuned config per
# shape is not worth the autotuner's first calls. On GPU 32 channels x 64 pixels (128 bytes of a
# 16-bit NCHW channel's pixels); in the interpreter 16 x 16, so that test shapes take several blocks.
_GRAD_NOISE_CONFIG = (triton.Config({"BLOCK_C": 16, "BLOCK_P": 16}, num_warps=1) if _IN_INTERPRETER
                      else triton.Config({"BLOCK_C": 32, "BLOCK_P": 64}, num_warps=4))


def _grad_noise(grad_x, noise_weight):
    """dξ = Σ_c a_c dx_c as a contiguous (N, 1, H, W) tensor (grad_x's H and W collapse: it is x's
    memory format)."""
    n, c, h, w = grad_x.shape
    grad_noise = grad_x.new_empty((n, 1, h, w))
    if grad_noise.numel():
        pixel_blocks = cdiv(h * w, _GRAD_NOISE_CONFIG.kwargs["BLOCK_P"])
        _grad_noise_kernel[(n * pixel_blocks,)](grad_x, noise_weight.contiguous(), grad_noise, h * w, c, pixel_blocks,
                                                 *_plane_strides(grad_x), **_GRAD_NOISE_CONFIG.kwargs,
                                                 ACC=tl_accumulation_dtype(grad_x.dtype),
                                                 num_warps=_GRAD_NOISE_CONFIG.num_warps)
    return grad_noise


@on_inputs_device
def forward(x, noise, noise_weight, style_scale, style_bias, eps, negative_slope):
    x = _with_collapsible_hw(x)
    n, c, h, w = x.shape
    y = torch.empty_like(x, memory_format=output_memory_format(x))
    mean = torch.empty((n, c), device=x.device, dtype=accumulation_dtype(x.dtype))
    rstd = torch.empty_like(mean)
    has_noise = noise is not None
    noise = _with_collapsible_hw(noise) if has_noise else x  # x: a placeholder pointer, never read
    noise_n, _, noise_hw = _plane_strides(noise)
    inputs = (x, noise, noise_weight.contiguous(), style_scale.contiguous(), style_bias.contiguous())
    strides = (*_plane_strides(x), noise_n, noise_hw)
    options = dict(HAS_NOISE=has_noise, ACC=tl_accumulation_dtype(x.dtype))
    if not _use_ranges(x):
        _launch_plane(_forward_kernel, n, c, h * w, *inputs, y, mean, rstd, c, h * w, *strides, *_plane_strides(y),
                      eps, negative_slope, **options)
        return y, mean, rstd
    block_c, splits = _range_split(x)
    partial = mean  # one range a plane: the forward kernel sums it itself (one launch, not two), reads no partials
    if splits > 1:
        partial = torch.empty((splits, 2, n, c), device=x.device, dtype=torch.float64)  # _range_moments' sums
        _launch_ranges(_range_stats_kernel, n, c, block_c, splits, *inputs, partial, c, h * w, splits, *strides,
                       **options)
    _launch_ranges(_range_forward_kernel, n, c, block_c, splits, *inputs, partial, y, mean, rstd, c, h * w, splits,
                   *strides, *_plane_strides(y), eps, negative_slope, ONE_RANGE=splits == 1, **options)
    return y, mean, rstd


@on_inputs_device
def backward(grad_y, x, noise, noise_weight, style_scale, style_bias, mean, rstd, negative_slope, compute_grad_noise):
    x, grad_y = _with_collapsible_hw(x), _with_collapsible_hw(grad_y)
    n, c, h, w = x.shape
    grad_x = torch.empty_like(x, memory_format=output_memory_format(x))
    grad_scale = torch.empty((n, c), device=x.device, dtype=x.dtype)
    grad_bias = torch.empty_like(grad_scale)
    has_noise = noise is not None
    noise = _with_collapsible_hw(noise) if has_noise else x  # placeholder pointer, never read
    noise_n, _, noise_hw = _plane_strides(noise)
    inputs = (grad_y, x, noise, noise_weight.contiguous(), style_scale.contiguous(), style_bias.contiguous(),
              mean.contiguous(), rstd.contiguous())
    strides = (*_plane_strides(grad_y), *_plane_strides(x), noise_n, noise_hw)
    options = dict(HAS_NOISE=has_noise, ACC=tl_accumulation_dtype(x.dtype))
    # grad_a: Σ dv·ξ of every plane (of every pixel range), rows of C summed by torch.sum, a fixed order for a
    # shape: deterministic.
    if not _use_ranges(x):
        grad_a = torch.empty((n, c), device=x.device, dtype=mean.dtype)
        _launch_plane(_backward_kernel, n, c, h * w, *inputs, grad_x, grad_a, grad_scale, grad_bias, c, h * w,
                      *strides, *_plane_strides(grad_x), negative_slope, **options)
    else:
        block_c, splits = _range_split(x)
        grad_a = torch.empty((splits, n, c), device=x.device, dtype=mean.dtype)
        partial = grad_a  # one range a plane: as in the forward, one kernel that reads no partials
        if splits > 1:
            partial = torch.empty((splits, 2, n, c), device=x.device, dtype=mean.dtype)
            _launch_ranges(_range_grad_sums_kernel, n, c, block_c, splits, *inputs, partial, c, h * w, splits,
                           *strides, negative_slope, **options)
        _launch_ranges(_range_backward_kernel, n, c, block_c, splits, *inputs, partial, grad_x, grad_a, grad_scale,
                       grad_bias, c, h * w, splits, *strides, *_plane_strides(grad_x), negative_slope,
                       ONE_RANGE=splits == 1, **options)
    grad_noise = _grad_noise(grad_x, noise_weight) if compute_grad_noise else grad_x.new_empty(0)
    return grad_x, grad_noise, grad_a.view(-1, c).sum(dim=0).to(x.dtype), grad_scale, grad_bias
