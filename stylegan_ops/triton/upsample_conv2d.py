"""Triton kernels of upsample_conv2d: implicit GEMMs, the forward's over the four output phases.

Forward. Folded weights Wf[a, b, t, u] (2x2 per phase, see stylegan_ops/ops/upsample_conv2d.py)
are computed once per call by _fold_kernel, as sums of taps in the accumulation dtype rounded once
to the input dtype. With x̃(i, j) = x at (i + a - 1 + t, j + b - 1 + u), zero outside:

    y[n, o, 2i+a, 2j+b] = bias[o] + Σ_{t,u,c} x̃[n, c] Wf[a,b,t,u][c, o]
        GEMM per phase: M = N*H*W low-res pixels, N = C_out, K = 4 * C_in

Backward. The upsampling's adjoint sums conv2d's input gradient over each 2x2 block; by linearity
the sums move onto dy. Pixel (i, j) meets tap (k, l) of the 3x3 filters through the 2x2 window of
dy at rows 2i+1-k, 2i+2-k and columns 2j+1-l, 2j+2-l, whose mean is A[2i+2-k, 2j+2-l] with
A = avg_pool2d(dy, 2, stride=1, padding=1), (2H+1) x (2W+1) (zeros outside dy counted in;
_window_means_kernel). So

    dx[n, c, i, j] = 4 Σ_{k,l,o} W[o, c, k, l] A[n, o, 2i+2-k, 2j+2-l]
        one GEMM, K = 9 * C_out; with few pixels its K is split over programs into float32
        partials, then summed
    dW[o, c, k, l] = 4 Σ_{n,i,j} A[n, o, 2i+2-k, 2j+2-l] x[n, c, i, j]
        9 GEMMs with K = N*H*W, split over SPLIT_K programs into float32 partials, summed in a
        fixed order (deterministic) by a kernel that writes them in the weight's layout

9 products per pixel and channel pair instead of the phase form's 16, with the 3x3 weights as
they are (nothing to fold, nothing to unfold). A holds the windows' means, not sums, so that a
16-bit A overflows only where dy does; the 4 is applied in the accumulation dtype, exactly.

Every GEMM accumulates in float32 (float64 for float64). float32 operands multiply on the tensor
cores as 3xTF32 (``input_precision="tf32x3"``): each operand is split into its TF32 rounding and
the TF32 part of the remainder, and three TF32 products (the remainders' product left out) make
each multiply-add, about 2^-21 relative error a product where one TF32 product has 2^-11: within
float32 tolerance, whatever torch's TF32 flags say. On the CUDA cores (``"ieee"``, before) a
128x128x32 iteration of the forward took 2382 instructions a thread, 4764 clocks to issue for
8 warps, against 639 instructions and 1536 tensor-core clocks as 3xTF32 (Triton 3.8, sm_90:
``python benchmarks/triton_loop_cost.py --dtype float32``). float16 and bfloat16 multiply exactly
into float32, float64 on the CUDA cores (``input_precision="ieee"``). Tensors are addressed by their
strides: NCHW and channels_last need no copy.
"""
import torch
import triton
import triton.language as tl

from stylegan_ops.ops._dtypes import accumulation_dtype
from stylegan_ops.ops._layout import conv_output_memory_format, output_memory_format
from stylegan_ops.triton import (autotune, autotune_on_gpu, cdiv, interpreted, launch_autotuned, multiprocessor_count,
                                  next_power_of_2, on_inputs_device, tl_accumulation_dtype)

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
    """a @ b accumulated in ACC: float32 operands as 3xTF32 on the tensor cores (module docstring),
    the others exactly. UPCAST: multiply in ACC, for bfloat16 under the Triton interpreter, whose
    tl.dot on bfloat16 operands returns garbage (seen with Triton 3.8); the interpreter multiplies
    float32 exactly, whatever the precision asked for."""
    if UPCAST:
        a, b = a.to(ACC), b.to(ACC)
    if a.dtype == tl.float32:
        return tl.dot(a, b, input_precision="tf32x3", out_dtype=ACC)
    return tl.dot(a, b, input_precision="ieee", out_dtype=ACC)


@triton.jit
def _forward_kernel(
    X, WF, BIAS, Y,
    pixels, C_in, C_out, H, W,
    x_n, x_c, x_h, x_w, y_n, y_c, y_h, y_w,
    HAS_BIAS: tl.constexpr, ACC: tl.constexpr, UPCAST: tl.constexpr, EVEN_K: tl.constexpr, INDEX: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m, pid_n, phase = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    a, b = phase // 2, phase % 2
    pix = pid_m.to(INDEX) * BLOCK_M + tl.arange(0, BLOCK_M)
    o = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    pix_ok, o_ok = pix < pixels, o < C_out
    n, i, j = _pixel_coordinates(pix, H, W)
    # A tap shifts x by (di, dj): its rows are these pixels' addresses plus one scalar offset, and
    # only the halo flags decide which of them lie outside x. All per-pixel work stays outside the
    # loop, whose body is then the loads' vector addresses and the dot (benchmarks/triton_loop_cost.py).
    x_pixel = X + n * x_n + i.to(tl.int64) * x_h + j.to(tl.int64) * x_w
    has_up, has_down, has_left, has_right = i > 0, i < H - 1, j > 0, j < W - 1
    w_phase = WF + (phase * 4 * C_in).to(tl.int64) * C_out
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    # One loop over (channel block, tap), taps fastest: see _grad_x_kernel.
    for step in range(4 * tl.cdiv(C_in, BLOCK_K)):
        tap, k0 = step % 4, step // 4 * BLOCK_K
        di, dj = a - 1 + tap // 2, b - 1 + tap % 2
        in_ok = pix_ok & ((di >= 0) | has_up) & ((di <= 0) | has_down)
        in_ok &= ((dj >= 0) | has_left) & ((dj <= 0) | has_right)
        x_row = x_pixel + (di * x_h + dj * x_w)
        w_tap = w_phase + (tap * C_in).to(tl.int64) * C_out
        c = k0 + tl.arange(0, BLOCK_K)
        c_ok = (c < C_in) | EVEN_K  # EVEN_K: no channel block overhangs C_in (_even_k)
        xa = tl.load(x_row[:, None] + c[None, :].to(tl.int64) * x_c, mask=in_ok[:, None] & c_ok[None, :], other=0.0)
        wb = tl.load(w_tap + c[:, None] * C_out + o[None, :], mask=c_ok[:, None] & o_ok[None, :], other=0.0)
        acc += _dot(xa, wb, ACC, UPCAST)
    if HAS_BIAS:
        acc += tl.load(BIAS + o, mask=o_ok, other=0.0).to(ACC)[None, :]
    oh, ow = (2 * i + a).to(tl.int64), (2 * j + b).to(tl.int64)
    y_ptr = Y + (n * y_n + oh * y_h + ow * y_w)[:, None] + o[None, :].to(tl.int64) * y_c
    tl.store(y_ptr, acc.to(Y.dtype.element_ty), mask=pix_ok[:, None] & o_ok[None, :])


@triton.jit
def _window_means_kernel(DY, A, BIAS_PARTIAL, C, H2, W2, pixels, h_magic, h_shift, w_magic, w_shift,
                         dy_n, dy_c, dy_h, dy_w, a_n, a_c, a_h, a_w,
                         CHANNELS_INNER: tl.constexpr, SUM_BIAS: tl.constexpr, ACC: tl.constexpr, INDEX: tl.constexpr,
                         PIXEL_TILES: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """A[n, c, r, s] = (dy[r-1, s-1] + dy[r-1, s] + dy[r, s-1] + dy[r, s]) / 4, zeros outside dy's
    H2 x W2, for r <= H2 and s <= W2: avg_pool2d(dy, 2, stride=1, padding=1). A program takes
    BLOCK_C channels of PIXEL_TILES tiles of BLOCK_P consecutive pixels (n, r, s) of A, one after
    another; a tile's last axis (the lanes' fastest: Triton cannot see through the pixels'
    divisions which one is contiguous) is the channels for channels_last and the pixels for NCHW,
    so that consecutive lanes read consecutive elements of dy and write A in order. (ATen's
    channels_last avg_pool2d took 0.318 ms for this at (8, 512, 64, 64) bf16 on the H100 run of
    2026-11-27, 68 MB of traffic: 23 us at the copy ceiling; this kernel's one-dimensional version
    0.028 ms, its first 2-D one, a program a 4096-element tile, 0.041.)

    Registers: a thread's elements of a tile each take a 64-bit address per window tap, and
    Triton's int64 division and remainder are long sequences; the 4096-element tiles with int64
    pixel indices took 108 registers a thread (bf16, channels_last, 64 channels), 201 in float32,
    and spilled up to 3 KiB a thread at one or two channels (tests/triton_sm90_compile.py). Tiles
    of 1024 elements and pixel indices split in int32 by _divmod (INDEX int32, unless the tensors
    or the pixels are too many: _index_dtype) take 40 to 80 and spill nothing.

    SUM_BIAS: d bias from the same reads (ATen's sum of dy took 0.051 ms more there): the
    program also sums, in ACC, the pixels dy[r, s] at its windows' bottom right (r < H2, s < W2:
    every pixel of dy once) over its pixels into BIAS_PARTIAL[program along the pixels, c]; d
    bias is their sum over those programs."""
    channels_1d = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    bias_acc = tl.zeros((BLOCK_P, BLOCK_C) if CHANNELS_INNER else (BLOCK_C, BLOCK_P), ACC)
    for tile in tl.static_range(PIXEL_TILES):
        pixels_1d = (tl.program_id(0).to(INDEX) * PIXEL_TILES + tile) * BLOCK_P + tl.arange(0, BLOCK_P)
        row_1d, s_1d = _divmod(pixels_1d, W2 + 1, w_magic, w_shift, INDEX)
        n_1d, r_1d = _divmod(row_1d, H2 + 1, h_magic, h_shift, INDEX)
        if CHANNELS_INNER:
            pixel, n, r, s, c = pixels_1d[:, None], n_1d[:, None], r_1d[:, None], s_1d[:, None], channels_1d[None, :]
        else:
            pixel, n, r, s, c = pixels_1d[None, :], n_1d[None, :], r_1d[None, :], s_1d[None, :], channels_1d[:, None]
        ok = (pixel < pixels) & (c < C)
        sample = DY + n * dy_n + c.to(INDEX) * dy_c
        acc = tl.zeros((BLOCK_P, BLOCK_C) if CHANNELS_INNER else (BLOCK_C, BLOCK_P), ACC)
        for dr in tl.static_range(2):
            for ds in tl.static_range(2):
                row, col = r - 1 + dr, s - 1 + ds
                inside = ok & (row >= 0) & (row < H2) & (col >= 0) & (col < W2)
                v = tl.load(sample + row * dy_h + col * dy_w, mask=inside, other=0.0).to(ACC)
                acc += v
                if SUM_BIAS and dr == 1 and ds == 1:  # dy[r, s]
                    bias_acc += v
        tl.store(A + n * a_n + c.to(INDEX) * a_c + r * a_h + s * a_w, (acc * 0.25).to(A.dtype.element_ty), mask=ok)
    if SUM_BIAS:
        partial_row = BIAS_PARTIAL + tl.program_id(0).to(tl.int64) * C
        tl.store(partial_row + channels_1d, tl.sum(bias_acc, axis=0 if CHANNELS_INNER else 1), mask=channels_1d < C)


@triton.jit
def _pixel_coordinates(pix, H, W):
    """(n, i, j) of pixel indices pix = (n * H + i) * W + j, n in int64, by division (once a
    program, outside the loops; d weight's loop uses _divmod). Rows first, then samples: no product
    H * W, which may pass 2^31 where pix is int64 (H and W are int32)."""
    row = pix // W
    return (row // H).to(tl.int64), row % H, pix % W


@triton.jit
def _window_means_at(n, i, j, a_n, a_h, a_w):
    """The offset of A[n, 0, 2i + 2, 2j + 2], in the dtype of n, i and j, where pixel (n, i, j) of x
    meets tap (0, 0); tap (k, l) is _tap_shift(k, l) from there, inside A ((2H + 1) x (2W + 1)) for
    every pixel of x."""
    return n * a_n + (2 * i + 2) * a_h + (2 * j + 2) * a_w


@triton.jit
def _tap_shift(tap, a_h, a_w):
    """The offset in A from where a pixel meets tap (0, 0) to where it meets tap (k, l) = divmod(tap, 3)."""
    return -(tap // 3) * a_h - tap % 3 * a_w


@triton.jit
def _grad_x_kernel(
    A, WT, GX, PARTIAL,
    pixels, C_in, C_out, H, W, SPLIT_K,
    a_n, a_c, a_h, a_w, gx_n, gx_c, gx_h, gx_w,
    ACC: tl.constexpr, UPCAST: tl.constexpr, EVEN_K: tl.constexpr, INDEX: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m, pid_n, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    pix = pid_m.to(INDEX) * BLOCK_M + tl.arange(0, BLOCK_M)
    c = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    pix_ok, c_ok = pix < pixels, c < C_in
    n, i, j = _pixel_coordinates(pix, H, W)
    i, j = i.to(tl.int64), j.to(tl.int64)
    a_pixel = A + _window_means_at(n, i, j, a_n, a_h, a_w)
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    # One loop over (channel block, tap), taps fastest, not a K-loop per tap: Triton pipelines a
    # loop's loads (num_stages deep) within the loop, so 9 short loops (C_out / BLOCK_K steps
    # each: 1 to 4 at the generator's 64- and 128-channel levels) would fill and drain the
    # pipeline 9 times. Not tl.static_range either: unrolled, the per-tap K-loops spilled
    # registers and took 20 to 30 s per config to compile for float32 (sm_90,
    # tests/triton_sm90_compile.py). Taps fastest: the step's split into (channel block, tap) is
    # by the constant 9, a few instructions, where a runtime count of channel blocks took a
    # division's twenty; and a tap only shifts the pixels' addresses by a scalar.
    # With SPLIT_K > 1 each program along axis 2 takes one share of the 9 * k_steps steps (the
    # last share may be shorter) and stores its partial dx in ACC (few pixels give too few
    # programs otherwise: _grad_x_split).
    steps = 9 * tl.cdiv(C_out, BLOCK_K)
    split_steps = tl.cdiv(steps, SPLIT_K)
    for step in range(split * split_steps, tl.minimum((split + 1) * split_steps, steps)):
        tap, k0 = step % 9, step // 9 * BLOCK_K
        a_row = a_pixel + _tap_shift(tap, a_h, a_w)
        w_tap = WT + (tap * C_in).to(tl.int64) * C_out
        o = k0 + tl.arange(0, BLOCK_K)
        o_ok = (o < C_out) | EVEN_K
        at = tl.load(a_row[:, None] + o[None, :].to(tl.int64) * a_c, mask=pix_ok[:, None] & o_ok[None, :], other=0.0)
        wt = tl.load(w_tap + c[None, :].to(tl.int64) * C_out + o[:, None], mask=o_ok[:, None] & c_ok[None, :],
                     other=0.0)
        acc += _dot(at, wt, ACC, UPCAST)
    acc = acc * 4  # A holds the means of dy's 2x2 windows: a quarter of their sums
    ok = pix_ok[:, None] & c_ok[None, :]
    if SPLIT_K == 1:
        gx_pixel = n * gx_n + i.to(tl.int64) * gx_h + j.to(tl.int64) * gx_w
        tl.store(GX + gx_pixel[:, None] + c[None, :].to(tl.int64) * gx_c, acc.to(GX.dtype.element_ty), mask=ok)
    else:  # PARTIAL (SPLIT_K, pixels, C_in)
        tl.store(PARTIAL + (split.to(tl.int64) * pixels + pix)[:, None] * C_in + c[None, :], acc, mask=ok)


@triton.jit
def _sum_grad_x_splits_kernel(
    PARTIAL, GX, pixels, C_in, H, W, SPLIT_K, p_split, gx_n, gx_c, gx_h, gx_w,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """dx from _grad_x_kernel's partials (SPLIT_K, pixels, C_in), p_split apart, summed in split
    order (deterministic) in their dtype and rounded once, written through dx's strides. A
    program's BLOCK_P pixels x BLOCK_C channels load along c; an NCHW dx is stored along the
    pixels (Triton moves the block between the two layouts through shared memory). Pixel indices
    in int32: only few pixels' dx is split (_grad_x_split)."""
    pix = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    ok = (pix < pixels)[:, None] & (c < C_in)[None, :]
    partial = PARTIAL + pix.to(tl.int64)[:, None] * C_in + c[None, :]
    acc = tl.zeros((BLOCK_P, BLOCK_C), PARTIAL.dtype.element_ty)
    for _ in range(SPLIT_K):
        acc += tl.load(partial, mask=ok, other=0.0)
        partial += p_split
    n, i, j = _pixel_coordinates(pix, H, W)
    gx_pixel = n * gx_n + i.to(tl.int64) * gx_h + j.to(tl.int64) * gx_w
    tl.store(GX + gx_pixel[:, None] + c[None, :].to(tl.int64) * gx_c, acc.to(GX.dtype.element_ty), mask=ok)


@triton.jit
def _divmod(p, d, magic, shift, INDEX: tl.constexpr):
    """(p // d, p % d) for indices p >= 0 of dtype INDEX (_index_dtype). int32, 0 <= p < 2**31: by one
    multiply-high, where Triton's division by a runtime d takes about twenty instructions: with
    shift = ceil(log2 d) and magic = ceil(2**(31 + shift) / d), below 2**32 (_division_magic passes
    its 32 bits as an int32), p // d = (2p · magic) >> (32 + shift) for every such p (Granlund and
    Montgomery, PLDI 1994; Hacker's Delight, 10-9). Unsigned throughout: 2p and magic may have bit
    31 set. int64: by int64 division (magic and shift unused)."""
    if INDEX == tl.int32:
        q = tl.umulhi(p.to(tl.uint32, bitcast=True) * 2, magic.to(tl.uint32, bitcast=True)) >> shift.to(tl.uint32)
        q = q.to(tl.int32, bitcast=True)
    else:
        q = p.to(tl.int64) // d
    return q, p - q * d


@triton.jit
def _grad_weight_kernel(
    X, A, PARTIAL,
    pixels, C_in, C_out, H, W, SPLIT_K, h_magic, h_shift, w_magic, w_shift,
    x_n, x_c, x_h, x_w, a_n, a_c, a_h, a_w,
    ACC: tl.constexpr, UPCAST: tl.constexpr, INDEX: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_c, pid_o, pid_z = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    tap, split = pid_z % 9, pid_z // 9
    c = pid_c * BLOCK_M + tl.arange(0, BLOCK_M)
    o = pid_o * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ok, o_ok = c < C_in, o < C_out
    a_tap = _tap_shift(tap, a_h, a_w)
    acc = tl.zeros((BLOCK_M, BLOCK_N), ACC)
    # K runs over the pixels: each step splits its BLOCK_K pixel indices into (n, i, j), by
    # multiplies (_divmod) rather than divisions, which took a third of the loop's instructions,
    # and computes their offsets in INDEX, int32 unless the tensors or the pixels are too many
    # (_index_dtype), a pointer added last: 64-bit offsets took another third. (The forward's and
    # dx's loops add a tap's shift to pixel pointers made once, before the loop: no gain there.)
    for k0 in range(split * BLOCK_K, pixels, SPLIT_K * BLOCK_K):
        pix = k0 + tl.arange(0, BLOCK_K)
        row, j = _divmod(pix, W, w_magic, w_shift, INDEX)
        n, i = _divmod(row, H, h_magic, h_shift, INDEX)
        n, i, j = n.to(INDEX), i.to(INDEX), j.to(INDEX)
        pix_ok = pix < pixels
        x_col = n * x_n + i * x_h + j * x_w
        xt = tl.load(X + (x_col[None, :] + c[:, None].to(INDEX) * x_c), mask=c_ok[:, None] & pix_ok[None, :],
                     other=0.0)
        a_row = a_tap + _window_means_at(n, i, j, a_n, a_h, a_w)
        at = tl.load(A + (a_row[:, None] + o[None, :].to(INDEX) * a_c), mask=pix_ok[:, None] & o_ok[None, :],
                     other=0.0)
        acc += _dot(xt, at, ACC, UPCAST)
    out = PARTIAL + ((split * 9 + tap) * C_in).to(tl.int64) * C_out + c[:, None].to(tl.int64) * C_out + o[None, :]
    tl.store(out, acc * 4, mask=c_ok[:, None] & o_ok[None, :])  # A's means are a quarter of the sums


@triton.jit
def _sum_splits_kernel(PARTIAL, GRAD_W, C_in, C_out, SPLIT_K, p_split, CHANNELS_LAST: tl.constexpr,
                       BLOCK_O: tl.constexpr, BLOCK_Q: tl.constexpr):
    """d weight (C_out, C_in, 3, 3), contiguous or CHANNELS_LAST, from _grad_weight_kernel's partials
    (SPLIT_K, 9, C_in, C_out), p_split apart, summed in split order (deterministic) in their dtype,
    then rounded once.

    A program sums BLOCK_O output channels x BLOCK_Q consecutive entries q of their rows of d
    weight (q = 9c + tap, or 9 runs tap * C_in + c in channels_last): its loads run along o and its
    stores along q, both contiguous (Triton moves the block between the two layouts through shared
    memory). A sum followed by a copy through the permuted view walked one side 9 * C_in * C_out
    elements apart, the write pattern that cost the CUDA backward's unfold kernel 0.052 ms at
    512 -> 512 channels on the H100 run."""
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    ok = (o < C_out)[:, None] & (q < 9 * C_in)[None, :]
    if CHANNELS_LAST:
        tap, c = q // C_in, q % C_in
    else:
        tap, c = q % 9, q // 9
    taps = PARTIAL + (tap.to(tl.int64) * C_in * C_out + c.to(tl.int64) * C_out)[None, :] + o[:, None]
    acc = tl.zeros((BLOCK_O, BLOCK_Q), PARTIAL.dtype.element_ty)
    for _ in range(SPLIT_K):
        acc += tl.load(taps, mask=ok, other=0.0)
        taps += p_split
    tl.store(GRAD_W + o[:, None].to(tl.int64) * 9 * C_in + q[None, :], acc.to(GRAD_W.dtype.element_ty), mask=ok)


# ---- the forward's weight folding, per (o, c) filter pair -----------------------------------------
# The same sums as fold_taps in csrc/cuda/upsample_conv2d_kernel.cu: folded taps are sums of taps,
# never products with a 0/1 matrix, so an infinite tap folds to ±inf (inf * 0 would be NaN).
FOLD_BLOCK = 256
WINDOW_MEANS_ELEMENTS = 1024  # per tile: BLOCK_P pixels x BLOCK_C channels
WINDOW_MEANS_TILES = 4  # per program (one row of d bias partials)


@triton.jit
def _fold_axis(w0, w1, w2):
    """Taps (w0, w1, w2) along one axis -> folded taps (a, t) in the order (0,0), (0,1), (1,0), (1,1):
    phase 0 sees (w0, w1 + w2), phase 1 sees (w0 + w1, w2)."""
    return w0, w1 + w2, w0 + w1, w2


@triton.jit
def _filter_row(FILT, row, w_h, w_w, ok, ACC: tl.constexpr):
    """The three taps of one row of these pairs' 3x3 filters, in ACC."""
    return (tl.load(FILT + row * w_h, mask=ok, other=0.0).to(ACC),
            tl.load(FILT + row * w_h + w_w, mask=ok, other=0.0).to(ACC),
            tl.load(FILT + row * w_h + 2 * w_w, mask=ok, other=0.0).to(ACC))


@triton.jit
def _store_folded(WF, slab_ab, pairs, pair, ok, v0, v1, v2):
    """Folds row-folded tap (a, t)'s three column taps and stores the (b, u) taps: slab_ab = 8a + 2t."""
    f00, f01, f10, f11 = _fold_axis(v0, v1, v2)
    tl.store(WF + slab_ab * pairs + pair, f00.to(WF.dtype.element_ty), mask=ok)
    tl.store(WF + (slab_ab + 1) * pairs + pair, f01.to(WF.dtype.element_ty), mask=ok)
    tl.store(WF + (slab_ab + 4) * pairs + pair, f10.to(WF.dtype.element_ty), mask=ok)
    tl.store(WF + (slab_ab + 5) * pairs + pair, f11.to(WF.dtype.element_ty), mask=ok)


@triton.jit
def _fold_kernel(WEIGHT, WF, C_in, C_out, w_o, w_c, w_h, w_w, ACC: tl.constexpr, BLOCK: tl.constexpr):
    """(C_out, C_in, 3, 3), read through its strides, -> Wf (16, C_in, C_out), slab 8a + 4b + 2t + u:
    rows folded, then columns."""
    pair = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # c * C_out + o: Wf's stores are contiguous
    pairs = C_in * C_out
    ok = pair < pairs
    filt = WEIGHT + (pair % C_out).to(tl.int64) * w_o + (pair // C_out).to(tl.int64) * w_c
    w0, w1, w2 = _filter_row(filt, 0, w_h, w_w, ok, ACC)
    w3, w4, w5 = _filter_row(filt, 1, w_h, w_w, ok, ACC)
    w6, w7, w8 = _filter_row(filt, 2, w_h, w_w, ok, ACC)
    r00_0, r01_0, r10_0, r11_0 = _fold_axis(w0, w3, w6)  # column 0 folded over rows: taps (a, t)
    r00_1, r01_1, r10_1, r11_1 = _fold_axis(w1, w4, w7)
    r00_2, r01_2, r10_2, r11_2 = _fold_axis(w2, w5, w8)
    _store_folded(WF, 0, pairs, pair, ok, r00_0, r00_1, r00_2)
    _store_folded(WF, 2, pairs, pair, ok, r01_0, r01_1, r01_2)
    _store_folded(WF, 8, pairs, pair, ok, r10_0, r10_1, r10_2)
    _store_folded(WF, 10, pairs, pair, ok, r11_0, r11_1, r11_2)


# The keys hold an input's channel stride (1 for channels_last, H*W for NCHW): the two layouts load
# tiles so differently that one's best config says nothing about the other's.
_forward_autotuned = autotune(_GPU_CONFIGS, key=["C_in", "C_out", "H", "W", "x_c"])(_forward_kernel)
_grad_x_autotuned = autotune(_GPU_CONFIGS, key=["C_in", "C_out", "H", "W", "SPLIT_K", "a_c"])(_grad_x_kernel)
# Each program stores (not adds) its partial tile, so autotuning reruns need no reset.
_grad_weight_autotuned = autotune(_GPU_CONFIGS, key=["C_in", "C_out", "H", "W", "SPLIT_K", "x_c"])(
    _grad_weight_kernel
)


# ---- launchers ------------------------------------------------------------------------------------
# _sum_splits_kernel's block: 32 float32 partials along o are one 128-byte load a (tap, c).
SUM_BLOCK_O, SUM_BLOCK_Q = 32, 128
SUM_BLOCK_P, SUM_BLOCK_C = 32, 32  # _sum_grad_x_splits_kernel's block: pixels x channels
_IN_INTERPRETER = interpreted(_forward_kernel)


# Indices below this are computed in int32 (_index_dtype); a test lowers it to run the int64 kernels
# on small tensors.
INT32_INDICES_BELOW = 2**31
# No program forms pixel indices more than this past the last pixel: a GEMM tile takes up to 256, d
# weight's loop counter steps up to SPLIT_K * BLOCK_K = 32 * 64 past it (_grad_weight_split), a
# window-means program takes 4 tiles of up to 1024.
PIXEL_OVERHANG = 4096


def _index_dtype(pixels, *tensors):
    """The kernels' INDEX: tl.int32 if every pixel index a program forms (below pixels +
    PIXEL_OVERHANG, masked lanes included) and every element offset of these tensors (d weight's
    and the window means' offsets are INDEX too) lie below INT32_INDICES_BELOW, else tl.int64.
    Offsets of lanes outside the tensors may then wrap; their loads are masked."""
    extent = max((sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride())) for t in tensors
                  if t.numel()), default=0)
    return tl.int32 if max(extent, pixels + PIXEL_OVERHANG - 1) < INT32_INDICES_BELOW else tl.int64


def _even_k(channels):
    """The forward's and dx's EVEN_K: whether every BLOCK_K (each divides 64) divides their K
    channels, so that no channel block overhangs and the loads need no channel mask: 6 to 12% of
    the forward's loop instructions, up to 8% of dx's (benchmarks/triton_loop_cost.py). The
    generator's levels of 64 to 512 channels all are."""
    return channels % 64 == 0


assert all(64 % config.kwargs["BLOCK_K"] == 0 and max(config.kwargs.values()) <= PIXEL_OVERHANG
           for config in (*_GPU_CONFIGS, _GPU_FIXED, _INTERPRETER_CONFIG))
assert WINDOW_MEANS_TILES * WINDOW_MEANS_ELEMENTS <= PIXEL_OVERHANG


def _dtypes(x):
    """Kernel dtype arguments: the accumulation dtype, and whether to multiply in it (see _dot)."""
    return dict(ACC=tl_accumulation_dtype(x.dtype), UPCAST=x.dtype == torch.bfloat16 and _IN_INTERPRETER)


def _fold(weight):
    """(C_out, C_in, 3, 3) -> Wf (2, 2, 2, 2, C_in, C_out) = (a, b, t, u, c, o), contiguous, weight's dtype."""
    c_out, c_in = weight.shape[:2]
    _check_fold_indices(c_in, c_out)
    folded = torch.empty((2, 2, 2, 2, c_in, c_out), device=weight.device, dtype=weight.dtype)
    _fold_kernel[(cdiv(c_in * c_out, FOLD_BLOCK),)](weight, folded, c_in, c_out, *weight.stride(),
                                                   ACC=tl_accumulation_dtype(weight.dtype), BLOCK=FOLD_BLOCK)
    return folded


def _check_fold_indices(c_in, c_out):
    if 16 * c_in * c_out >= 2**31:  # the fold kernels index Wf and dWf's slabs in 32 bits
        raise RuntimeError(f"upsample_conv2d (triton): C_in * C_out = {c_in * c_out} filter pairs, 16 folded taps "
                           "each, need more than 32-bit indices in the Triton fold kernels")


def _division_magic(d):
    """(magic, shift) for _divmod's division by d >= 1: magic = ceil(2**(31 + shift) / d) < 2**32 as
    the int32 of its bits, shift = ceil(log2 d)."""
    shift = (d - 1).bit_length()
    magic = -(-(1 << (31 + shift)) // d)
    return magic - (1 << 32) if magic >= 1 << 31 else magic, shift


def _grad_weight_split(n, c_in, c_out, h, w, device):
    """SPLIT_K for d weight: enough pixel shares that the 9 tap GEMMs (counted in 64x64 tiles)
    give about four programs per SM, each share at least 1024 pixels, at most 32. Every share
    keeps a float32 copy of d weight (9 * C_in * C_out), so no more shares than that."""
    tiles = 9 * cdiv(c_in, 64) * cdiv(c_out, 64)
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
    c_out, pixels = weight.shape[0], n * h * w
    y = torch.empty((n, c_out, 2 * h, 2 * w), device=x.device, dtype=x.dtype,
                    memory_format=conv_output_memory_format(x, weight))
    _launch(
        _forward_kernel, _forward_autotuned,
        lambda bm, bn: (cdiv(pixels, bm), cdiv(c_out, bn), 4),
        x, _fold(weight), bias.contiguous() if bias is not None else x, y,
        pixels, c_in, c_out, h, w, *x.stride(), *y.stride(),
        HAS_BIAS=bias is not None, EVEN_K=_even_k(c_in), INDEX=_index_dtype(pixels), **_dtypes(x),
    )
    return y


@on_inputs_device
def backward(grad_y, x, weight, output_mask):
    """(grad_x, grad_weight, grad_bias); a gradient output_mask does not ask for is empty, not computed."""
    # The means of dy's 2x2 windows, A in the module docstring: one pass, read by both GEMMs, which
    # gives d bias too; without A, d bias is a sum of its own.
    if output_mask[0] or output_mask[1]:
        window_means, grad_bias = _window_means(grad_y, output_mask[2])
    else:
        window_means, grad_bias = None, grad_y.sum(dim=(0, 2, 3)) if output_mask[2] else None
    return (_grad_x(window_means, x, weight) if output_mask[0] else x.new_empty(0),
            _grad_weight(window_means, x, weight) if output_mask[1] else x.new_empty(0),
            grad_bias if output_mask[2] else x.new_empty(0))


def _window_means(grad_y, with_grad_bias):
    """(A, d bias): A (N, C_out, 2H + 1, 2W + 1) in grad_y's dtype and memory format, d bias (C_out,)
    if ``with_grad_bias``, else None (_window_means_kernel)."""
    n, c, h2, w2 = grad_y.shape
    memory_format = output_memory_format(grad_y)
    window_means = torch.empty((n, c, h2 + 1, w2 + 1), device=grad_y.device, dtype=grad_y.dtype,
                               memory_format=memory_format)
    pixels = n * (h2 + 1) * (w2 + 1)
    # A lane's neighbours along the tile's last axis: channels_last tiles of up to 64 channels (128-byte
    # rows in 16-bit types), NCHW tiles of up to 8 channels and at least 128 pixels.
    block_c = min(64 if memory_format == torch.channels_last else 8, next_power_of_2(c))
    block_p = WINDOW_MEANS_ELEMENTS // block_c
    grid = (cdiv(pixels, WINDOW_MEANS_TILES * block_p), cdiv(c, block_c))
    # Float partials (one row per program along the pixels), summed in a fixed order: deterministic.
    partial = (torch.empty((grid[0], c), device=grad_y.device, dtype=accumulation_dtype(grad_y.dtype))
               if with_grad_bias else window_means)
    if window_means.numel() > 0:
        _window_means_kernel[grid](
            grad_y, window_means, partial, c, h2, w2, pixels, *_division_magic(h2 + 1), *_division_magic(w2 + 1),
            *grad_y.stride(), *window_means.stride(), CHANNELS_INNER=memory_format == torch.channels_last,
            SUM_BIAS=with_grad_bias, ACC=tl_accumulation_dtype(grad_y.dtype),
            INDEX=_index_dtype(pixels, grad_y, window_means), PIXEL_TILES=WINDOW_MEANS_TILES, BLOCK_P=block_p,
            BLOCK_C=block_c)
    return window_means, partial.sum(dim=0).to(grad_y.dtype) if with_grad_bias else None


def _grad_x_split(n, c_in, h, w, device):
    """SPLIT_K for dx: with few pixels (the generator's 8x8 and 16x16 levels) the (pixel, channel)
    tiles of dx are too few to fill the GPU (at 8x8, batch 8, 512 channels: 64 tiles of 64x64 for
    132 SMs, each a serial loop of 9 * C_out products), so the 9 * C_out steps are split over up
    to 16 programs per tile, about four programs per SM in all; a power of two, so that few
    values reach the autotuner's key."""
    tiles = cdiv(n * h * w, 64) * cdiv(c_in, 64)
    if tiles == 0:  # no pixels (the library op takes an empty batch): nothing to share out
        return 1
    wanted = min(cdiv(4 * multiprocessor_count(device), tiles), 16)
    return 1 << (wanted.bit_length() - 1)


def _grad_x(window_means, x, weight):
    n, c_in, h, w = x.shape
    c_out, pixels = weight.shape[0], n * h * w
    grad_x = torch.empty_like(x, memory_format=output_memory_format(x))
    split_k = _grad_x_split(n, c_in, h, w, x.device)
    # SPLIT_K partials, pixel-major: (split, n, i, j, c). With SPLIT_K = 1 the kernel stores into
    # grad_x itself and never touches this argument.
    partial = (torch.empty((split_k, n, h, w, c_in), device=x.device, dtype=accumulation_dtype(x.dtype))
               if split_k > 1 else grad_x)
    taps = weight.permute(2, 3, 1, 0).contiguous()  # (k, l, c, o): tap (k, l)'s matrix, o contiguous
    _launch(
        _grad_x_kernel, _grad_x_autotuned,
        lambda bm, bn: (cdiv(pixels, bm), cdiv(c_in, bn), split_k),
        window_means, taps, grad_x, partial, pixels, c_in, c_out, h, w, split_k, *window_means.stride(),
        *grad_x.stride(), EVEN_K=_even_k(c_out), INDEX=_index_dtype(pixels), **_dtypes(x),
    )
    if split_k > 1:
        _sum_grad_x_splits_kernel[(cdiv(pixels, SUM_BLOCK_P), cdiv(c_in, SUM_BLOCK_C))](
            partial, grad_x, pixels, c_in, h, w, split_k, partial.stride(0), *grad_x.stride(), BLOCK_P=SUM_BLOCK_P,
            BLOCK_C=SUM_BLOCK_C)
    return grad_x


def _grad_weight(window_means, x, weight):
    n, c_in, h, w = x.shape
    c_out, pixels = weight.shape[0], n * h * w
    split_k = _grad_weight_split(n, c_in, c_out, h, w, x.device)
    # (split, 3k + l, c, o), all stored
    partial = torch.empty((split_k, 9, c_in, c_out), device=x.device, dtype=accumulation_dtype(x.dtype))
    _launch(
        _grad_weight_kernel, _grad_weight_autotuned,
        lambda bm, bn: (cdiv(c_in, bm), cdiv(c_out, bn), 9 * split_k),
        x, window_means, partial, pixels, c_in, c_out, h, w, split_k, *_division_magic(h), *_division_magic(w),
        *x.stride(), *window_means.stride(), INDEX=_index_dtype(pixels, x, window_means), **_dtypes(x),
    )
    memory_format = output_memory_format(weight)  # in another layout autograd would copy it into the weight's
    grad_weight = torch.empty_like(weight, memory_format=memory_format)
    _sum_splits_kernel[(cdiv(9 * c_in, SUM_BLOCK_Q), cdiv(c_out, SUM_BLOCK_O))](
        partial, grad_weight, c_in, c_out, split_k, partial.stride(0),
        CHANNELS_LAST=memory_format == torch.channels_last, BLOCK_O=SUM_BLOCK_O, BLOCK_Q=SUM_BLOCK_Q)
    return grad_weight
