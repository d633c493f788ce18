"""Triton kernels of upsample_conv2d: implicit GEMMs over the four output phases.

Folded weights Wf[a, b, t, u] (2x2 per phase, see stylegan_ops/ops/upsample_conv2d.py) are
computed once per call by _fold_kernel, as sums of taps in the accumulation dtype rounded once to
the input dtype; _unfold_grad_kernel applies the adjoint to dWf. With x̃(i, j) = x at
(i + a - 1 + t, j + b - 1 + u), zero outside:

    forward   y[n, o, 2i+a, 2j+b] = bias[o] + Σ_{t,u,c} x̃[n, c] Wf[a,b,t,u][c, o]
                 GEMM per phase: M = N*H*W low-res pixels, N = C_out, K = 4 * C_in
    dx        dx[n, c, i, j] = Σ_{a,b,t,u,o} dy[n, o, 2i'+a, 2j'+b] Wf[a,b,t,u][c, o],
                 i' = i - a + 1 - t (one GEMM, K = 16 * C_out; with few pixels its K is split
                 over programs into float32 partials, then summed)
    dWf       dWf[a,b,t,u][c, o] = Σ_{n,i,j} x̃[n, c] dy[n, o, 2i+a, 2j+b]
                 16 GEMMs with K = N*H*W, split over SPLIT_K programs into float32
                 partials summed in a fixed order (deterministic), then unfolded to 3x3.

Every GEMM accumulates in float32 (float64 for float64) with ``input_precision="ieee"``, so
float32 stays exact to float32 tolerance (no TF32). Tensors are addressed by their strides:
NCHW and channels_last need no copy.
"""

import torch
import triton
import triton.language as tl

from stylegan_ops.ops._dtypes import accumulation_dtype
from stylegan_ops.ops._layout import conv_output_memory_format, output_memory_format
from stylegan_ops.triton import (autotune_on_gpu, cdiv, interpreted, launch_autotuned, multiprocessor_count,
                                  on_inputs_device, tl_accumulation_dtype)

# On GPU the kernels are autotuned over _GPU_CONFIGS, or run _GPU_FIXED with autotuning switched
# off (stylegan_ops.triton.autotune_on_gpu); Triton's interpreter (CPU tests) runs a small config.
_INTERPRETER_CONFIG = triton.Config(dict(BLOCK_M=32, BLOCK_N=16, BLOCK_K=16))
_GPU_FIXED = triton.Config(dict(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32), num_warps=4, num_stages=3)
# A tile of BLOCK_M x BLOCK_N loads BLOCK_M + BLOCK_N elements per multiply of BLOCK_M * BLOCK_N:
# 64 products per element at 128 x 128, and the H100 run's forward (0.213 ms at 8 x 512 -> 512 on
# 32x32) moved about 5 TB/s from L2 at that rate, near the ceiling. 256 x 128 makes it 85; for
# channels_last it fits 240 registers with no spills in all three kernels (NCHW spills: the
# autotuner times it like any other; tests/triton_sm90_compile.py --autotune --verbose).
_GPU_CONFIGS = [
    triton.Config(dict(BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk), num_warps=w, num_stages=s)
    for bm, bn, bk, w, s in [(256, 128, 32, 8, 3), (128, 128, 32, 8, 3), (128, 64, 32, 4, 3), (64, 128, 32, 4, 3),
                             (64, 64, 64, 4, 3), (128, 128, 64, 8, 2), (64, 64, 32, 4, 4)]
]


@triton.jit
def _dot(a, b, ACC: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b accumulated in ACC. UPCAST: multiply in ACC, for bfloat16 under the Triton
    interpreter, whose tl.dot on bfloat16 operands returns garbage (seen with Triton 3.8)."""
    if UPCAST:
        a, b = a.to(ACC), b.to(ACC)
    return tl.dot(a, b, input_precision="ieee", out_dtype=ACC)


@triton.jit
def _forward_kernel(
    X, WF, BIAS, Y,
    N, C_in, C_out, H, W,
    x_n, x_c, x_h, x_w, y_n, y_c, y_h, y_w,
    HAS_BIAS: tl.constexpr, ACC: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m, pid_n, phase = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    a, b = phase // 2, phase % 2
    pix = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    pix_ok, o_ok = pix < N * H * W, o < C_out
    n, i, j = (pix // (H * W)).to(tl.int64), (pix // W) % H, pix % W
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    k_steps = tl.cdiv(C_in, BLOCK_K)
    for step in range(4 * k_steps):  # (tap, channel block) flattened: see _grad_x_kernel
        tap, k0 = step // k_steps, step % k_steps * BLOCK_K
        t, u = tap // 2, tap % 2
        ih, iw = i + a - 1 + t, j + b - 1 + u
        in_ok = pix_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_row = X + n * x_n + ih.to(tl.int64) * x_h + iw.to(tl.int64) * x_w
        w_tap = WF + ((phase * 4 + tap) * C_in).to(tl.int64) * C_out
        c = k0 + tl.arange(0, BLOCK_K)
        c_ok = c < C_in
        xa = tl.load(x_row[:, None] + c[None, :].to(tl.int64) * x_c, mask=in_ok[:, None] & c_ok[None, :], other=0.0)
        wb = tl.load(w_tap + c[:, None] * C_out + o[None, :], mask=c_ok[:, None] & o_ok[None, :], other=0.0)
        acc += _dot(xa, wb, ACC, UPCAST)
    if HAS_BIAS:
        acc += tl.load(BIAS + o, mask=o_ok, other=0.0).to(ACC)[None, :]
    oh, ow = (2 * i + a).to(tl.int64), (2 * j + b).to(tl.int64)
    y_ptr = Y + (n * y_n + oh * y_h + ow * y_w)[:, None] + o[None, :].to(tl.int64) * y_c
    tl.store(y_ptr, acc.to(Y.dtype.element_ty), mask=pix_ok[:, None] & o_ok[None, :])


@triton.jit
def _grad_x_kernel(
    GY, WF, GX, PARTIAL,
    N, C_in, C_out, H, W, SPLIT_K,
    gy_n, gy_c, gy_h, gy_w, gx_n, gx_c, gx_h, gx_w,
    ACC: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m, pid_n, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    pix = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    c = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    pix_ok, c_ok = pix < N * H * W, c < C_in
    n, i, j = (pix // (H * W)).to(tl.int64), (pix // W) % H, pix % W
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    # One loop over (phase-tap, channel block), not a K-loop per phase-tap: Triton pipelines a loop's
    # loads (num_stages deep) within the loop, so 16 short loops (C_out / BLOCK_K steps each: 1 to 4
    # at the generator's 64- and 128-channel levels) would fill and drain the pipeline 16 times. Not
    # tl.static_range either: unrolled, the 16 pipelined K-loops spilled registers and took 20 to 30 s
    # per config to compile for float32 (sm_90, tests/triton_sm90_compile.py).
    # With SPLIT_K > 1 (a power of two up to 16: it divides the 16 * k_steps steps) each program
    # along axis 2 takes one share of the steps and stores its partial dx in ACC (few pixels give
    # too few programs otherwise: _grad_x_split).
    k_steps = tl.cdiv(C_out, BLOCK_K)
    split_steps = 16 * k_steps // SPLIT_K
    for step in range(split * split_steps, (split + 1) * split_steps):
        phase_tap, k0 = step // k_steps, step % k_steps * BLOCK_K
        phase, tap = phase_tap // 4, phase_tap % 4
        a, b, t, u = phase // 2, phase % 2, tap // 2, tap % 2
        si, sj = i - a + 1 - t, j - b + 1 - u  # low-res output pixel that read x[i, j] through this tap
        src_ok = pix_ok & (si >= 0) & (si < H) & (sj >= 0) & (sj < W)
        gy_row = GY + n * gy_n + (2 * si + a).to(tl.int64) * gy_h + (2 * sj + b).to(tl.int64) * gy_w
        w_tap = WF + (phase_tap * C_in).to(tl.int64) * C_out
        o = k0 + tl.arange(0, BLOCK_K)
        o_ok = o < C_out
        dya = tl.load(gy_row[:, None] + o[None, :].to(tl.int64) * gy_c, mask=src_ok[:, None] & o_ok[None, :],
                      other=0.0)
        wt = tl.load(w_tap + c[None, :] * C_out + o[:, None], mask=o_ok[:, None] & c_ok[None, :], other=0.0)
        acc += _dot(dya, wt, ACC, UPCAST)
    ok = pix_ok[:, None] & c_ok[None, :]
    if SPLIT_K == 1:
        gx_pixel = n * gx_n + i.to(tl.int64) * gx_h + j.to(tl.int64) * gx_w
        tl.store(GX + gx_pixel[:, None] + c[None, :].to(tl.int64) * gx_c, acc.to(GX.dtype.element_ty), mask=ok)
    else:  # PARTIAL (SPLIT_K, N*H*W, C_in)
        tl.store(PARTIAL + (split * N * H * W + pix).to(tl.int64)[:, None] * C_in + c[None, :], acc, mask=ok)


@triton.jit
def _grad_weight_kernel(
    X, GY, PARTIAL,
    N, C_in, C_out, H, W, SPLIT_K,
    x_n, x_c, x_h, x_w, gy_n, gy_c, gy_h, gy_w,
    ACC: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_c, pid_o, pid_z = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    phase_tap, split = pid_z % 16, pid_z // 16
    phase, tap = phase_tap // 4, phase_tap % 4
    a, b, t, u = phase // 2, phase % 2, tap // 2, tap % 2
    c = pid_c * BLOCK_M + tl.arange(0, BLOCK_M)
    o = pid_o * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ok, o_ok = c < C_in, o < C_out
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    for k0 in range(split * BLOCK_K, N * H * W, SPLIT_K * BLOCK_K):
        pix = k0 + tl.arange(0, BLOCK_K)
        n, i, j = (pix // (H * W)).to(tl.int64), (pix // W) % H, pix % W
        ih, iw = i + a - 1 + t, j + b - 1 + u
        pix_ok = pix < N * H * W
        in_ok = pix_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        x_col = X + n * x_n + ih.to(tl.int64) * x_h + iw.to(tl.int64) * x_w
        xt = tl.load(x_col[None, :] + c[:, None].to(tl.int64) * x_c, mask=c_ok[:, None] & in_ok[None, :], other=0.0)
        gy_row = GY + n * gy_n + (2 * i + a).to(tl.int64) * gy_h + (2 * j + b).to(tl.int64) * gy_w
        dy = tl.load(gy_row[:, None] + o[None, :].to(tl.int64) * gy_c, mask=pix_ok[:, None] & o_ok[None, :], other=0.0)
        acc += _dot(xt, dy, ACC, UPCAST)
    out = PARTIAL + ((split * 16 + phase_tap) * C_in).to(tl.int64) * C_out + c[:, None] * C_out + o[None, :]
    tl.store(out, acc, mask=c_ok[:, None] & o_ok[None, :])


# ---- the weight folding, per (o, c) filter pair ---------------------------------------------------
# The same sums as fold_taps / unfold_taps in csrc/upsample_conv2d.h: folded taps are sums of taps,
# never products with a 0/1 matrix, so an infinite tap folds to ±inf (inf * 0 would be NaN).
FOLD_BLOCK = 256


@triton.jit
def _fold_axis(w0, w1, w2):
    """Taps (w0, w1, w2) along one axis -> folded taps (a, t) in the order (0,0), (0,1), (1,0), (1,1):
    phase 0 sees (w0, w1 + w2), phase 1 sees (w0 + w1, w2)."""
    return w0, w1 + w2, w0 + w1, w2


@triton.jit
def _unfold_axis(g00, g01, g10, g11):
    """The adjoint of _fold_axis: gradients of the folded taps (a, t) -> of the three taps."""
    return g00 + g10, g01 + g10, g01 + g11


@triton.jit
def _filter_row(FILT, row, ok, ACC: tl.constexpr):
    """The three taps of one row of these pairs' 3x3 filters, in ACC."""
    return (tl.load(FILT + 3 * row, mask=ok, other=0.0).to(ACC),
            tl.load(FILT + 3 * row + 1, mask=ok, other=0.0).to(ACC),
            tl.load(FILT + 3 * row + 2, mask=ok, other=0.0).to(ACC))


@triton.jit
def _store_folded(WF, slab_ab, pairs, pair, ok, v0, v1, v2):
    """Folds row-folded tap (a, t)'s three column taps and stores the (b, u) taps: slab_ab = 8a + 2t."""
    f00, f01, f10, f11 = _fold_axis(v0, v1, v2)
    tl.store(WF + slab_ab * pairs + pair, f00.to(WF.dtype.element_ty), mask=ok)
    tl.store(WF + (slab_ab + 1) * pairs + pair, f01.to(WF.dtype.element_ty), mask=ok)
    tl.store(WF + (slab_ab + 4) * pairs + pair, f10.to(WF.dtype.element_ty), mask=ok)
    tl.store(WF + (slab_ab + 5) * pairs + pair, f11.to(WF.dtype.element_ty), mask=ok)


@triton.jit
def _fold_kernel(WEIGHT, WF, C_in, C_out, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """(C_out, C_in, 3, 3) -> Wf (16, C_in, C_out), slab 8a + 4b + 2t + u: rows folded, then columns."""
    pair = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # c * C_out + o: Wf's stores are contiguous
    pairs = C_in * C_out
    ok = pair < pairs
    filt = WEIGHT + ((pair % C_out) * C_in + pair // C_out).to(tl.int64) * 9  # tap 3 * row + column
    w0, w1, w2 = _filter_row(filt, 0, ok, ACC)
    w3, w4, w5 = _filter_row(filt, 1, ok, ACC)
    w6, w7, w8 = _filter_row(filt, 2, ok, ACC)
    r00_0, r01_0, r10_0, r11_0 = _fold_axis(w0, w3, w6)  # column 0 folded over rows: taps (a, t)
    r00_1, r01_1, r10_1, r11_1 = _fold_axis(w1, w4, w7)
    r00_2, r01_2, r10_2, r11_2 = _fold_axis(w2, w5, w8)
    _store_folded(WF, 0, pairs, pair, ok, r00_0, r00_1, r00_2)
    _store_folded(WF, 2, pairs, pair, ok, r01_0, r01_1, r01_2)
    _store_folded(WF, 8, pairs, pair, ok, r10_0, r10_1, r10_2)
    _store_folded(WF, 10, pairs, pair, ok, r11_0, r11_1, r11_2)


@triton.jit
def _summed_partial(PARTIAL, slab, pairs, pair, ok, SPLIT_K, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """One dWf slab of these pairs, its SPLIT_K partials added in split order (deterministic)."""
    total = tl.zeros((BLOCK,), ACC)
    for split in range(SPLIT_K):
        total += tl.load(PARTIAL + (split * 16 + slab) * pairs + pair, mask=ok, other=0.0)
    return total


@triton.jit
def _unfolded_columns(PARTIAL, slab_ab, pairs, pair, ok, SPLIT_K, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """Row-folded tap (a, t)'s gradient over the three columns, from its (b, u) slabs: slab_ab = 8a + 2t."""
    return _unfold_axis(_summed_partial(PARTIAL, slab_ab, pairs, pair, ok, SPLIT_K, ACC, BLOCK),
                        _summed_partial(PARTIAL, slab_ab + 1, pairs, pair, ok, SPLIT_K, ACC, BLOCK),
                        _summed_partial(PARTIAL, slab_ab + 4, pairs, pair, ok, SPLIT_K, ACC, BLOCK),
                        _summed_partial(PARTIAL, slab_ab + 5, pairs, pair, ok, SPLIT_K, ACC, BLOCK))


@triton.jit
def _store_unfolded_column(GW_FILT, column, ok, g00, g01, g10, g11):
    """Unfolds one column's row-folded gradients (a, t) and stores its three taps."""
    g0, g1, g2 = _unfold_axis(g00, g01, g10, g11)
    tl.store(GW_FILT + column, g0.to(GW_FILT.dtype.element_ty), mask=ok)
    tl.store(GW_FILT + 3 + column, g1.to(GW_FILT.dtype.element_ty), mask=ok)
    tl.store(GW_FILT + 6 + column, g2.to(GW_FILT.dtype.element_ty), mask=ok)


@triton.jit
def _unfold_grad_kernel(PARTIAL, GW, C_in, C_out, SPLIT_K, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """dWf partials (SPLIT_K, 16, C_in, C_out) -> d weight (C_out, C_in, 3, 3): the adjoint of
    _fold_kernel, columns first, then rows."""
    pair = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    pairs = C_in * C_out
    ok = pair < pairs
    c00_0, c00_1, c00_2 = _unfolded_columns(PARTIAL, 0, pairs, pair, ok, SPLIT_K, ACC, BLOCK)
    c01_0, c01_1, c01_2 = _unfolded_columns(PARTIAL, 2, pairs, pair, ok, SPLIT_K, ACC, BLOCK)
    c10_0, c10_1, c10_2 = _unfolded_columns(PARTIAL, 8, pairs, pair, ok, SPLIT_K, ACC, BLOCK)
    c11_0, c11_1, c11_2 = _unfolded_columns(PARTIAL, 10, pairs, pair, ok, SPLIT_K, ACC, BLOCK)
    filt = GW + ((pair % C_out) * C_in + pair // C_out).to(tl.int64) * 9
    _store_unfolded_column(filt, 0, ok, c00_0, c01_0, c10_0, c11_0)
    _store_unfolded_column(filt, 1, ok, c00_1, c01_1, c10_1, c11_1)
    _store_unfolded_column(filt, 2, ok, c00_2, c01_2, c10_2, c11_2)


# The keys hold an input's channel stride (1 for channels_last, H*W for NCHW): the two layouts load
# tiles so differently that one's best config says nothing about the other's.
_forward_autotuned = triton.autotune(_GPU_CONFIGS, key=["C_in", "C_out", "H", "W", "x_c"])(_forward_kernel)
_grad_x_autotuned = triton.autotune(_GPU_CONFIGS, key=["C_in", "C_out", "H", "W", "SPLIT_K", "gy_c"])(_grad_x_kernel)
# Each program stores (not adds) its partial tile, so autotuning reruns need no reset.
_grad_weight_autotuned = triton.autotune(_GPU_CONFIGS, key=["C_in", "C_out", "H", "W", "SPLIT_K", "x_c"])(
    _grad_weight_kernel
)


# ---- launchers ------------------------------------------------------------------------------------
_IN_INTERPRETER = interpreted(_forward_kernel)


def _dtypes(x):
    """Kernel dtype arguments: the accumulation dtype, and whether to multiply in it (see _dot)."""
    return dict(ACC=tl_accumulation_dtype(x.dtype), UPCAST=x.dtype == torch.bfloat16 and _IN_INTERPRETER)


def _fold(weight):
    """(C_out, C_in, 3, 3) -> Wf (2, 2, 2, 2, C_in, C_out) = (a, b, t, u, c, o), contiguous, weight's dtype."""
    c_out, c_in = weight.shape[:2]
    _check_fold_indices(c_in, c_out)
    folded = torch.empty((2, 2, 2, 2, c_in, c_out), device=weight.device, dtype=weight.dtype)
    _fold_kernel[(cdiv(c_in * c_out, FOLD_BLOCK),)](weight.contiguous(), folded, c_in, c_out,
                                                   ACC=tl_accumulation_dtype(weight.dtype), BLOCK=FOLD_BLOCK)
    return folded


def _check_fold_indices(c_in, c_out):
    if 16 * c_in * c_out >= 2**31:  # the fold kernels index Wf and dWf's slabs in 32 bits
        raise RuntimeError(f"upsample_conv2d (triton): C_in * C_out = {c_in * c_out} filter pairs, 16 folded taps "
                           "each, need more than 32-bit indices in the Triton fold kernels")


def _grad_weight_split(n, c_in, c_out, h, w, device):
    """SPLIT_K for d weight: enough pixel shares that the 16 phase-tap GEMMs (counted in 64x64
    tiles) give about four programs per SM, each share at least 1024 pixels, at most 32. Every
    share keeps a float32 copy of dWf (16 * C_in * C_out), so no more shares than that."""
    tiles = 16 * cdiv(c_in, 64) * cdiv(c_out, 64)
    wanted = cdiv(4 * multiprocessor_count(device), tiles)
    return max(1, min(wanted, 32, n * h * w // 1024))


def _launch(kernel, autotuned, grid_of, *args, **kwargs):
    if not _IN_INTERPRETER and autotune_on_gpu():
        launch_autotuned(autotuned, lambda meta: grid_of(meta["BLOCK_M"], meta["BLOCK_N"]), *args, **kwargs)
        return
    config = _INTERPRETER_CONFIG if _IN_INTERPRETER else _GPU_FIXED
    blocks = config.kwargs
    kernel[grid_of(blocks["BLOCK_M"], blocks["BLOCK_N"])](*args, **kwargs, **blocks, num_warps=config.num_warps,
                                                          num_stages=config.num_stages)


@on_inputs_device
def forward(x, weight, bias):
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    y = torch.empty((n, c_out, 2 * h, 2 * w), device=x.device, dtype=x.dtype,
                    memory_format=conv_output_memory_format(x, weight))
    _launch(
        _forward_kernel, _forward_autotuned,
        lambda bm, bn: (cdiv(n * h * w, bm), cdiv(c_out, bn), 4),
        x, _fold(weight), bias.contiguous() if bias is not None else x, y,
        n, c_in, c_out, h, w, *x.stride(), *y.stride(),
        HAS_BIAS=bias is not None, **_dtypes(x),
    )
    return y


@on_inputs_device
def backward(grad_y, x, weight, output_mask):
    """(grad_x, grad_weight, grad_bias); a gradient output_mask does not ask for is empty, not computed."""
    return (_grad_x(grad_y, x, weight) if output_mask[0] else x.new_empty(0),
            _grad_weight(grad_y, x, weight) if output_mask[1] else x.new_empty(0),
            grad_y.sum(dim=(0, 2, 3)))


def _grad_x_split(n, c_in, h, w, device):
    """SPLIT_K for dx: with few pixels (the generator's 8x8 and 16x16 levels) the (pixel, channel)
    tiles of dx are too few to fill the GPU (at 8x8, batch 8, 512 channels: 64 tiles of 64x64 for
    132 SMs, each a serial loop of 16 * C_out products), so the 16 * C_out steps are split over up
    to 16 programs per tile, about four programs per SM in all; a power of two, so that few
    values reach the autotuner's key."""
    tiles = cdiv(n * h * w, 64) * cdiv(c_in, 64)
    if tiles == 0:  # no pixels (the library op takes an empty batch): nothing to share out
        return 1
    wanted = min(cdiv(4 * multiprocessor_count(device), tiles), 16)
    return 1 << (wanted.bit_length() - 1)


def _grad_x(grad_y, x, weight):
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    grad_x = torch.empty_like(x, memory_format=output_memory_format(x))
    split_k = _grad_x_split(n, c_in, h, w, x.device)
    # SPLIT_K partials, pixel-major: (split, n, i, j, c). With SPLIT_K = 1 the kernel stores into
    # grad_x itself and never touches this argument.
    partial = (torch.empty((split_k, n, h, w, c_in), device=x.device, dtype=accumulation_dtype(x.dtype))
               if split_k > 1 else grad_x)
    _launch(
        _grad_x_kernel, _grad_x_autotuned,
        lambda bm, bn: (cdiv(n * h * w, bm), cdiv(c_in, bn), split_k),
        grad_y, _fold(weight), grad_x, partial, n, c_in, c_out, h, w, split_k, *grad_y.stride(), *grad_x.stride(),
        **_dtypes(x),
    )
    if split_k > 1:  # torch.sum's order is fixed for a shape: deterministic
        grad_x.copy_(partial.sum(dim=0).permute(0, 3, 1, 2))
    return grad_x


def _grad_weight(grad_y, x, weight):
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    _check_fold_indices(c_in, c_out)
    split_k = _grad_weight_split(n, c_in, c_out, h, w, x.device)
    partial = torch.empty((split_k, 16, c_in, c_out), device=x.device, dtype=accumulation_dtype(x.dtype))  # all stored
    _launch(
        _grad_weight_kernel, _grad_weight_autotuned,
        lambda bm, bn: (cdiv(c_in, bm), cdiv(c_out, bn), 16 * split_k),
        x, grad_y, partial, n, c_in, c_out, h, w, split_k, *x.stride(), *grad_y.stride(), **_dtypes(x),
    )
    grad_weight = torch.empty_like(weight, memory_format=torch.contiguous_format)
    _unfold_grad_kernel[(cdiv(c_in * c_out, FOLD_BLOCK),)](partial, grad_weight, c_in, c_out, split_k,
                                                          ACC=tl_accumulation_dtype(x.dtype), BLOCK=FOLD_BLOCK)
    return grad_weight
