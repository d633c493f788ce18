"""The CUDA kernels (csrc/cuda/), run on the CPU.

Each .cu file is compiled with the host compiler against tests/cuda_emulation/cuda_emulation.h
(a thread block as CPU threads, warp shuffles through a per-warp buffer) and checked against
the plain references: every tile, halo, tap, channel block, pixel split, vector width and layout
index of the forward and backward kernels runs here, without a GPU. upsample_conv2d's
float16/bfloat16 and float32 (3xTF32) go through its ldmatrix (d weight's float32 operands: word
loads, load_shared) and mma.sync, emulated lane by lane as the PTX ISA defines their fragments,
with their alignment rules checked and every ldmatrix, every word load and every epilogue store
of the accumulators (store_shared) free of bank conflicts; whether the hardware agrees, like the
speed of anything, is left to the GPU-marked tests.
"""

import math
import pathlib

import pytest
import torch
import torch.nn.functional as F
import torch.utils.cpp_extension

from reference import (LAYOUTS, assert_grad_weight_skips_the_padding, assert_matches_reference,
                       assert_only_asked_gradients, noise_adain_lrelu_reference, rel_l2, upsample_conv2d_reference)

HERE = pathlib.Path(__file__).parent / "cuda_emulation"
# dtype: (reference dtype, forward tolerance, gradient tolerance) from DESIGN.md §3.
TOLERANCES = {
    torch.float64: (torch.float64, 1e-12, 1e-12),
    torch.float32: (torch.float64, 1e-5, 1e-4),
    torch.float16: (torch.float32, 2e-3, 5e-3),
    torch.bfloat16: (torch.float32, 1e-2, 2e-2),
}
UPSAMPLE_NAMES = ("x", "weight", "bias")
# The ATen ops that launch no kernel on a GPU, the only ones the ops' host code may call.
ALLOCATIONS = {"aten::empty", "aten::empty_strided"}
# (N, C_in, C_out, H, W): partial 8x8 tiles and 16-wide grad-weight tiles, two channel blocks of
# 64 (dx) or 32 (forward) on either side with a partial one, several K stages with a partial last
# one, a 1x1 input. The phase convolutions' blocks take runs of consecutive pixel tiles (forward 4
# in fp16/bf16, 2 otherwise; dx 2): runs across tile rows and samples, and runs cut short by the
# last tile (45, 3 and 1 tiles). dx reads A, the means of dy's 2x2 windows, whose phase 0 has a
# row and a column more than the other phases: every shape's last tile row and column read them.
# Channel counts that are whole 16-byte vectors in some dtypes only (20, 70), in every dtype (24,
# 72, 40: channels_last tiles staged in vectors, through cp.async), and none; partial pixel tiles
# and channel blocks. (3, 24, 40, 20, 33) gives d weight's blocks two or more pixel tiles each,
# vector-staged, so its pipeline moves on to a second buffer (as dx's stages do at 24 and more
# channels). On the emulation's 16 SMs (16 forward and 32 dx block slots) the smaller
# grids split K over blocks (forward, dx): (1, 70, 20, 3, 20) into 5 (16-bit) or 8 and 2 to 5
# shares, (2, 24, 72, 5, 9) into 2 and 5 to 16, the first shape's dx into 5; its forward does not
# split. Unsplit grids whose destination channels are whole 16-byte vectors write channels_last a
# vector at a time: (3, 24, 40, 20, 33) in every dtype and both directions.
UPSAMPLE_SHAPES = [(2, 20, 70, 9, 17), (1, 70, 20, 3, 20), (2, 24, 72, 5, 9), (3, 24, 40, 20, 33), (1, 1, 1, 1, 1)]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    torch.utils.cpp_extension.load(
        name="cuda_emulated",
        sources=[str(HERE / name) for name in
                 ("upsample_conv2d_emulated.cpp", "noise_adain_lrelu_emulated.cpp", "runtime_emulated.cpp")],
        extra_cflags=["-O2", "-std=c++20", "-DSTYLEGAN_OPS_EMULATE_CUDA"],
        extra_ldflags=["-pthread"],
        build_directory=str(tmp_path_factory.mktemp("cuda_emulated")),
        is_python_module=False,
    )
    return torch.ops.stylegan_ops_emulated


# ---- upsample_conv2d ---------------------------------------------------------------------------
class EmulatedUpsampleConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ops, x, weight, bias):
        ctx.ops = ops
        ctx.save_for_backward(x, weight)
        return ops.upsample_conv2d(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        needed = list(ctx.needs_input_grad[1:4])
        grad_x, grad_weight, grad_bias = ctx.ops.upsample_conv2d_backward(grad_y, x, weight, needed)
        return None, *(grad if asked else None for grad, asked in zip((grad_x, grad_weight, grad_bias), needed))


def check_against_reference(emulated_fn, reference_fn, inputs, names, grad_y):
    """Output and every gradient of emulated_fn vs reference_fn at DESIGN.md §3 tolerances."""
    return assert_matches_reference(emulated_fn, reference_fn, inputs, names, grad_y, *TOLERANCES[inputs[0].dtype])


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("shape", UPSAMPLE_SHAPES, ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_upsample_conv2d_matches_reference(emulated, dtype, shape, memory_format):
    n, c_in, c_out, h, w = shape
    x = torch.randn(n, c_in, h, w, dtype=dtype).contiguous(memory_format=memory_format)
    weight, bias = torch.randn(c_out, c_in, 3, 3, dtype=dtype), torch.randn(c_out, dtype=dtype)
    grad_y = torch.randn(n, c_out, 2 * h, 2 * w, dtype=dtype).contiguous(memory_format=memory_format)
    y, (grad_x, _, _) = check_against_reference(lambda *a: EmulatedUpsampleConv2d.apply(emulated, *a),
                                                upsample_conv2d_reference, (x, weight, bias), UPSAMPLE_NAMES, grad_y)
    if c_in > 1 and c_out > 1:
        assert y.is_contiguous(memory_format=memory_format)
        assert grad_x.is_contiguous(memory_format=memory_format)


# The forward keeps three stages in flight (PhaseConvTile::kStages), and so does d weight in the
# 16-bit types (GradWeightTile::kStages); the shapes above give their blocks one or two stages in
# those types. Here 128 source channels are 8 forward stages of 16, on 16 blocks (16 pixel tiles by
# 128 destination channels: unsplit on the emulation's 16 block slots); dx's 8 stages (128
# channels of dy) split into 2 shares of 4 on two buffers; d weight's 16 tiles go to 2 splits of 8
# (grad_weight_splits). Every pipeline loads a stage into a buffer an earlier stage used.
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_upsample_conv2d_pipelines_reuse_their_buffers(emulated, dtype, memory_format):
    x = torch.randn(4, 128, 16, 16, dtype=dtype).contiguous(memory_format=memory_format)
    weight, bias = torch.randn(128, 128, 3, 3, dtype=dtype), torch.randn(128, dtype=dtype)
    grad_y = torch.randn(4, 128, 32, 32, dtype=dtype).contiguous(memory_format=memory_format)
    check_against_reference(lambda *a: EmulatedUpsampleConv2d.apply(emulated, *a), upsample_conv2d_reference,
                            (x, weight, bias), UPSAMPLE_NAMES, grad_y)


def test_upsample_conv2d_strided_inputs_without_bias(emulated):
    """A sliced x (no layout the kernels special-case) and a stride-0 grad_y, as from y.sum()."""
    x = torch.randn(2, 24, 11, 19, dtype=torch.float64)[:, ::2, 1:, ::2]
    weight = torch.randn(66, 12, 3, 3, dtype=torch.float64)
    y = emulated.upsample_conv2d(x, weight, None)
    assert rel_l2(y, upsample_conv2d_reference(x, weight)) < 1e-12
    grad_y = torch.ones(()).double().expand(y.shape)
    got = emulated.upsample_conv2d_backward(grad_y, x, weight, [True, True, True])
    xr, wr = x.clone().requires_grad_(), weight.clone().requires_grad_()
    want = torch.autograd.grad(upsample_conv2d_reference(xr, wr).sum(), (xr, wr))
    assert rel_l2(got[0], want[0]) < 1e-12 and rel_l2(got[1], want[1]) < 1e-12
    assert rel_l2(got[2], torch.full((66,), float(y[0, 0].numel() * 2), dtype=torch.float64)) == 0


@pytest.mark.parametrize("output_mask", [[True, False, False], [False, True, False], [False, False, True]],
                         ids=["grad_x", "grad_weight", "grad_bias"])
def test_upsample_conv2d_backward_computes_only_the_gradients_asked_for(emulated, output_mask):
    x = torch.randn(2, 20, 5, 9, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(70, 20, 3, 3, dtype=torch.float32)
    grad_y = torch.randn(2, 70, 10, 18, dtype=torch.float32)
    full = emulated.upsample_conv2d_backward(grad_y, x, weight, [True, True, True])
    assert_only_asked_gradients(output_mask, emulated.upsample_conv2d_backward(grad_y, x, weight, output_mask), full,
                                bias_rtol=1e-5)


# Source and destination layouts differ: an NCHW x with a channels_last weight writes a
# channels_last y (as F.conv2d), and a channel slice of a channels_last x is read as channels_last.
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("x_layout,weight_layout", [("contiguous", "channels_last"),
                                                    ("channels_last_slice", "contiguous")])
def test_upsample_conv2d_mixed_layouts(emulated, dtype, x_layout, weight_layout):
    x = LAYOUTS[x_layout][0](torch.randn(1, 20, 5, 9, dtype=dtype))
    weight = LAYOUTS[weight_layout][0](torch.randn(70, 20, 3, 3, dtype=dtype))
    bias = torch.randn(70, dtype=dtype)
    grad_y = torch.randn(1, 70, 10, 18, dtype=dtype)
    y, (grad_x, _, _) = check_against_reference(lambda *a: EmulatedUpsampleConv2d.apply(emulated, *a),
                                                upsample_conv2d_reference, (x, weight, bias), UPSAMPLE_NAMES, grad_y)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert grad_x.is_contiguous(memory_format=LAYOUTS[x_layout][1])


# A model moved to channels_last: the weight is read where it lies (a contiguous copy, aten::clone,
# cost a kernel and an allocation in the forward and again in dx), and d weight is written
# channels_last, as the parameter is laid out. 40 input channels: whole and partial tiles of the
# d weight sum (32 channels a tile in float32, 16 in float64). The ops' only ATen calls are
# allocations: every kernel is theirs (d bias's rows, and the forward's and dx's K shares on the
# emulation's 16 SMs, summed by sum_rows where ATen's sum and cast took two kernels).
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_upsample_conv2d_reads_and_writes_a_channels_last_weight_in_place(emulated, dtype):
    x, weight, grad_y = (t.contiguous(memory_format=torch.channels_last) for t in
                         (torch.randn(2, 40, 5, 9, dtype=dtype), torch.randn(36, 40, 3, 3, dtype=dtype),
                          torch.randn(2, 36, 10, 18, dtype=dtype)))
    bias = torch.randn(36, dtype=dtype)
    with torch.profiler.profile() as prof:
        y = emulated.upsample_conv2d(x, weight, bias)
        grad_x, grad_weight, grad_bias = emulated.upsample_conv2d_backward(grad_y, x, weight, [True, True, True])
    assert {event.key for event in prof.key_averages() if event.key.startswith("aten::")} <= ALLOCATIONS
    assert grad_weight.is_contiguous(memory_format=torch.channels_last)
    _, forward_tol, grad_tol = TOLERANCES[dtype]
    xr, wr = x.double().requires_grad_(), weight.double().requires_grad_()
    want_y = upsample_conv2d_reference(xr, wr, bias.double())
    want_x, want_weight = torch.autograd.grad(want_y, (xr, wr), grad_y.double())
    assert rel_l2(y, want_y) < forward_tol
    assert rel_l2(grad_x, want_x) < grad_tol and rel_l2(grad_weight, want_weight) < grad_tol
    assert rel_l2(grad_bias, grad_y.double().sum((0, 2, 3))) < grad_tol


# d weight's split partials are summed in tiles of tile_c input by kSumTile output channels
# (sum_tile_channels: the largest power of two up to kSumTile that gives two blocks an SM, 32 on the
# emulation's 16 SMs, else 1). 256 -> 128 channels take whole tiles (32 x 32 in float32, 16 x 16 in
# float64); 41 -> 33 take tiles 2 (float32) and 4 (float64) channels wide, the last one holding one
# channel. Either way d weight comes out in the weight's layout.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("c_in,c_out", [(256, 128), (41, 33)], ids=str)
@pytest.mark.parametrize("weight_layout", [torch.contiguous_format, torch.channels_last], ids=["oihw", "ohwi"])
def test_grad_weight_sums_tiles_of_every_width(emulated, dtype, c_in, c_out, weight_layout):
    x, grad_y = torch.randn(2, c_in, 3, 2, dtype=dtype), torch.randn(2, c_out, 6, 4, dtype=dtype)
    weight = torch.randn(c_out, c_in, 3, 3, dtype=dtype).contiguous(memory_format=weight_layout)
    _, grad_weight, _ = emulated.upsample_conv2d_backward(grad_y, x, weight, [False, True, False])
    assert grad_weight.is_contiguous(memory_format=weight_layout)
    wr = weight.double().requires_grad_()
    (want,) = torch.autograd.grad(upsample_conv2d_reference(x.double(), wr, None), wr, grad_y.double())
    assert rel_l2(grad_weight, want) < TOLERANCES[dtype][2]


# ---- noise_adain_lrelu ---------------------------------------------------------------------------
NOISE_NAMES = ("x", "noise", "noise_weight", "style_scale", "style_bias")


class EmulatedNoiseAdainLrelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ops, x, noise, noise_weight, style_scale, style_bias):
        y, mean, rstd = ops.noise_adain_lrelu(x, noise, noise_weight, style_scale, style_bias, 1e-5, 0.2)
        ctx.ops = ops
        ctx.save_for_backward(x, noise, noise_weight, style_scale, style_bias, mean, rstd)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, noise, noise_weight, style_scale, style_bias, mean, rstd = ctx.saved_tensors
        grads = ctx.ops.noise_adain_lrelu_backward(grad_y, x, noise, noise_weight, style_scale, style_bias, mean,
                                                   rstd, 0.2, True)
        return None, *grads


def noise_inputs(n, c, h, w, dtype, memory_format=torch.contiguous_format):
    x = (torch.randn(n, c, h, w, dtype=dtype) * 3 + 100).contiguous(memory_format=memory_format)  # a large offset
    params = [torch.randn(*shape, dtype=dtype) for shape in ((n, 1, h, w), (c,), (n, c), (n, c))]
    return [x, *params]


# (N, C, H, W) in NCHW, with the emulation's 16 SMs: a block per plane for 35 elements (no whole
# vectors: element path), 8x8 (vectors, register cache), 2 x 17 planes of 65x64 and of 91x92
# (vectors, swept twice: over 64x64) and 40 small planes; PlaneMajor pixel ranges for
# the few large planes of 80x80 (vectors, 3 ranges) and 67x71 (elements, 9 ranges). In
# channels_last every shape takes the ChannelMajor ranges, C = 40 with a partial second group of
# 32 channels.
@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize(
    "shape", [(2, 3, 5, 7), (2, 4, 8, 8), (2, 17, 65, 64), (2, 17, 91, 92), (1, 3, 80, 80), (1, 2, 67, 71),
              (2, 40, 9, 7)], ids=str
)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_noise_adain_lrelu_matches_reference(emulated, dtype, shape, memory_format):
    inputs = noise_inputs(*shape, dtype, memory_format)
    grad_y = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format)
    y, grads = check_against_reference(lambda *a: EmulatedNoiseAdainLrelu.apply(emulated, *a),
                                       noise_adain_lrelu_reference, inputs, NOISE_NAMES, grad_y)
    assert y.is_contiguous(memory_format=memory_format) and grads[0].is_contiguous(memory_format=memory_format)


# channels_last planes go over pixel ranges, two kernels a pass (partial sums, then the output);
# a plane of one range (the emulation's 16 SMs want 64 blocks, and a range at least 128 pixels:
# 8x8 at 40 channels) takes one kernel, which sums the plane itself (on a GPU the generator's 4x4
# and 8x8 levels at batch 8). 65x64 planes take 32 ranges. The backward adds one kernel, sum_rows,
# for d noise_weight's rows (a sample's pixel range each), where ATen's sum and cast took two; the
# ops' only ATen calls are allocations.
@pytest.mark.parametrize("shape,passes", [((2, 40, 8, 8), 1), ((2, 17, 65, 64), 2)], ids=str)
def test_noise_adain_lrelu_channels_last_launches(emulated, shape, passes):
    inputs = noise_inputs(*shape, torch.float32, torch.channels_last)
    grad_y = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    with torch.profiler.profile() as prof:
        before = emulated.kernel_launches()
        y, mean, rstd = emulated.noise_adain_lrelu(*inputs, 1e-5, 0.2)
        assert emulated.kernel_launches() - before == passes
        before = emulated.kernel_launches()
        emulated.noise_adain_lrelu_backward(grad_y, *inputs, mean, rstd, 0.2, False)
        assert emulated.kernel_launches() - before == passes + 1
    assert {event.key for event in prof.key_averages() if event.key.startswith("aten::")} <= ALLOCATIONS
    assert rel_l2(y, noise_adain_lrelu_reference(*(t.double() for t in inputs))) < 1e-5  # the rest: tests above


# The noise's gradient (compute_grad_noise: the noise requires grad) is one kernel more in either
# layout, grad_noise_kernel reading dx in place, and no ATen op but allocations (ATen's
# (dx * a).sum(1) took a mul, a sum and an x-sized temporary). C = 40 leaves channels_last's
# second group of 32 lanes partial, and 9x7 = 63 pixels NCHW's second block of 32 pixels.
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_noise_gradient_is_one_kernel(emulated, memory_format):
    inputs = noise_inputs(2, 40, 9, 7, torch.float64, memory_format)
    grad_y = torch.randn(2, 40, 9, 7, dtype=torch.float64).contiguous(memory_format=memory_format)
    _, mean, rstd = emulated.noise_adain_lrelu(*inputs, 1e-5, 0.2)
    launches, grad_noises = [], []
    with torch.profiler.profile() as prof:
        for compute_grad_noise in (False, True, True):
            before = emulated.kernel_launches()
            grads = emulated.noise_adain_lrelu_backward(grad_y, *inputs, mean, rstd, 0.2, compute_grad_noise)
            launches.append(emulated.kernel_launches() - before)
            grad_noises.append(grads[1])
    assert launches[1] == launches[2] == launches[0] + 1
    assert {event.key for event in prof.key_averages() if event.key.startswith("aten::")} <= ALLOCATIONS
    not_asked, grad_noise, again = grad_noises
    assert not_asked.numel() == 0 and grad_noise.shape == (2, 1, 9, 7) and grad_noise.is_contiguous()
    assert rel_l2(grad_noise, (grads[0] * inputs[2].view(1, -1, 1, 1)).sum(1, keepdim=True)) < 1e-12
    assert torch.equal(again, grad_noise)  # the same bits: a fixed order


# d noise_weight's partials are a row of C per sample for NCHW planes of a block each (N rows),
# summed by sum_rows: a thread a column under 32 rows, 8 groups of rows up to 255, 32 from 256;
# C = 3 leaves most of a block's columns past the end.
@pytest.mark.parametrize("n", [31, 33, 260])
def test_noise_weight_gradient_sums_every_row(emulated, n):
    inputs = noise_inputs(n, 3, 5, 7, torch.float64)
    check_against_reference(lambda *a: EmulatedNoiseAdainLrelu.apply(emulated, *a), noise_adain_lrelu_reference,
                            inputs, NOISE_NAMES, torch.randn(n, 3, 5, 7, dtype=torch.float64))


@pytest.mark.parametrize("case", ["no_noise", "strided_noise", "misaligned_views", "channels_last_slice"])
def test_noise_adain_lrelu_element_paths(emulated, case):
    """Where the 16-byte vector path ends: no noise still vectorises; a strided noise, and planes
    that start off a 16-byte boundary (a view one element in), take the element path. A channel
    slice of a channels_last x takes the channel-major ranges and writes a channels_last y."""
    x, noise, noise_weight, style_scale, style_bias = noise_inputs(2, 3, 8, 8, torch.float64)
    if case == "no_noise":
        noise = None
    elif case == "strided_noise":
        noise = torch.randn(2, 1, 8, 16, dtype=torch.float64)[..., ::2]  # H, W collapse with stride 2
    elif case == "misaligned_views":
        x = torch.randn(2 * 3 * 64 + 1, dtype=torch.float64)[1:].view(2, 3, 8, 8)
    else:
        x = LAYOUTS[case][0](x)
    grad_y = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y, mean, rstd = emulated.noise_adain_lrelu(x, noise, noise_weight, style_scale, style_bias, 1e-5, 0.2)
    channels_last = case == "channels_last_slice"
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    got = emulated.noise_adain_lrelu_backward(grad_y, x, noise, noise_weight, style_scale, style_bias, mean, rstd, 0.2,
                                              False)
    got = got[:1] + got[2:]  # grad_noise not asked for (see the reference's inputs)
    inputs = [t.clone().requires_grad_() for t in (x, noise_weight, style_scale, style_bias)]
    y_ref = noise_adain_lrelu_reference(inputs[0], noise, *inputs[1:])
    want = torch.autograd.grad(y_ref, inputs, grad_y, allow_unused=True)
    assert rel_l2(y, y_ref) < 1e-12
    for g, r in zip(got, want):
        assert torch.equal(g, torch.zeros_like(g)) if r is None else rel_l2(g, r) < 1e-12  # no noise: d weight is 0


# Each statistics path of the forward: NCHW register-cached, swept and PlaneMajor ranges;
# channels_last ChannelMajor one range a plane and several.
STATISTICS_PATHS = [((2, 4, 8, 8), torch.contiguous_format), ((2, 17, 65, 64), torch.contiguous_format),
                    ((1, 3, 80, 80), torch.contiguous_format), ((2, 40, 9, 7), torch.channels_last),
                    ((2, 17, 65, 64), torch.channels_last)]


# A plane's first pixel 1000 out. The ranges' statistics are sums of differences from that pixel,
# which in float32 lost 2.3e-6 (one range of 63 pixels) to 2.7e-4 of relative error; in float64
# (ShiftedSum) every path stays at float32's rounding of y (2e-7 measured), as the per-plane ones did.
@pytest.mark.parametrize("shape,memory_format", STATISTICS_PATHS, ids=str)
def test_outlying_first_pixel_keeps_float32_precision(emulated, shape, memory_format):
    inputs = noise_inputs(*shape, torch.float32, memory_format)
    inputs[0][:, :, 0, 0] += 1000.0
    grad_y = torch.randn(shape)
    y, _ = check_against_reference(lambda *a: EmulatedNoiseAdainLrelu.apply(emulated, *a), noise_adain_lrelu_reference,
                                   inputs, NOISE_NAMES, grad_y)
    assert rel_l2(y, noise_adain_lrelu_reference(*(t.double() for t in inputs))) < 1e-6


# A large common offset, randn + 1e4: float32 holds x to 1e-3 of its spread, and the mean, rounded
# to float, makes y as far off in every path (and in float32 eager), so the test reads 1 / std.
# The paths that sweep their planes (all but the register cache's, 8x8) sum in double about the
# plane's first value and keep it to 6e-8 (measured); the swept forward's float Welford
# summaries, whose running mean rounds, were 2.8e-5 off, and shifted chunk sums without the
# chunks' residual (add_chunk) up to 1.9e-4. (The register cache's two-pass float statistics lose
# the mean's rounding squared, 1.3e-6 here, 1e-8 at an offset of 1e3.)
@pytest.mark.parametrize("shape,memory_format", STATISTICS_PATHS[1:], ids=str)
def test_large_common_offset_keeps_rstd_to_float_precision(emulated, shape, memory_format):
    _, _, noise_weight, style_scale, style_bias = noise_inputs(*shape, torch.float32, memory_format)
    x = (torch.randn(shape) + 1e4).contiguous(memory_format=memory_format)
    _, _, rstd = emulated.noise_adain_lrelu(x, None, noise_weight, style_scale, style_bias, 1e-5, 0.2)
    rstd_ref = (x.double().flatten(2).var(-1, unbiased=False) + 1e-5).rsqrt()
    assert ((rstd.double() - rstd_ref).abs() / rstd_ref).max() < 1e-6


# eps = 0 and a constant plane (0 / 0): PyTorch's instance_norm normalises it to 0, so y is the
# LeakyReLU of the style bias, in each statistics path.
@pytest.mark.parametrize("shape,memory_format", STATISTICS_PATHS, ids=str)
def test_eps_zero_constant_plane(emulated, shape, memory_format):
    x, noise, noise_weight, style_scale, style_bias = noise_inputs(*shape, torch.float32, memory_format)
    x[0, 2] = 3.0
    y, _, rstd = emulated.noise_adain_lrelu(x, None, noise_weight, style_scale, style_bias, 0.0, 0.2)
    assert rstd[0, 2] == 0 and torch.equal(y[0, 2], F.leaky_relu(style_bias[0, 2], 0.2).expand(shape[2:]))
    others = torch.ones(shape[:2], dtype=torch.bool)
    others[0, 2] = False  # the plain reference divides 0 by 0 there
    y_ref = noise_adain_lrelu_reference(x.double(), None, noise_weight, style_scale, style_bias, eps=0.0)
    assert rel_l2(y[others], y_ref[others]) < 1e-5


# ---- NaN and inf propagate as in eager (DESIGN.md §3) ---------------------------------------------
# A NaN or an inf in a plane makes it NaN (inf - inf), in the per-plane kernels (NCHW 9x7), the
# ChannelMajor ranges (channels_last) and the PlaneMajor ranges (NCHW 80x80): the ranges' variance,
# a difference of sums, is inf - inf there and must stay NaN rather than be clamped to 0.
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=str)
@pytest.mark.parametrize("shape,memory_format", [((2, 40, 9, 7), torch.contiguous_format),
                                                 ((2, 40, 9, 7), torch.channels_last),
                                                 ((1, 4, 80, 80), torch.contiguous_format)], ids=str)
def test_non_finite_x_propagates_as_in_eager(emulated, value, shape, memory_format):
    x = torch.randn(shape, dtype=torch.float64)
    x[0, 3, 4, 5] = value
    x = x.contiguous(memory_format=memory_format)
    noise, noise_weight, style_scale, style_bias = noise_inputs(*shape, torch.float64)[1:]
    y = emulated.noise_adain_lrelu(x, noise, noise_weight, style_scale, style_bias, 1e-5, 0.2)[0]
    y_ref = noise_adain_lrelu_reference(x, noise, noise_weight, style_scale, style_bias)
    assert torch.equal(y.isnan(), y_ref.isnan()) and y.isnan()[0, 3].all() and not y.isinf().any()
    assert rel_l2(y.nan_to_num(), y_ref.nan_to_num()) < 1e-12


# float32 multiplies on the tensor cores as 3xTF32, whose split of a NaN (split_tf32) must leave it
# in the one product of big parts.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_nan_propagates_through_upsample_conv2d_as_in_eager(emulated, memory_format, dtype):
    x = torch.randn(2, 40, 9, 7, dtype=dtype)
    x[1, 3, 4, 5] = float("nan")
    x = x.contiguous(memory_format=memory_format)
    weight = torch.randn(20, 40, 3, 3, dtype=dtype)
    z = emulated.upsample_conv2d(x, weight, None)
    z_ref = upsample_conv2d_reference(x.double(), weight.double())
    assert torch.equal(z.isnan(), z_ref.isnan()) and z.isnan().any()
    assert rel_l2(z.nan_to_num(), z_ref.nan_to_num()) < TOLERANCES[dtype][1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_infinite_weight_tap_folds_to_inf(emulated, dtype):
    """fold_taps sums taps: an infinite tap gives ±inf where eager does (on interior outputs: see
    test_upsample_conv2d.py on padding), not the NaN of inf times a fold matrix's zeros."""
    x = torch.randn(2, 20, 5, 6, dtype=dtype)
    weight = torch.randn(30, 20, 3, 3, dtype=dtype)
    weight[4, 3, 0, 2] = math.inf
    y = emulated.upsample_conv2d(x, weight, None)[..., 1:-1, 1:-1]
    y_ref = upsample_conv2d_reference(x, weight)[..., 1:-1, 1:-1]
    assert y.isinf().any() and torch.equal(y.isinf(), y_ref.isinf()) and torch.equal(y.isnan(), y_ref.isnan())


# d weight sums over x's pixels only: its tiles' overhanging rows and columns (9 = 2 x 4 + 1 rows,
# 17 = 16 + 1 columns in the 16-bit types; whole tiles at 8 x 16) meet none of A's border values.
# With 64 and 80 channels, blocks of whole channel blocks and whole tiles (the interior copies,
# without bounds) run beside overhanging ones.
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(2, 20, 70, 9, 17), (1, 24, 40, 8, 16), (2, 64, 80, 9, 17)], ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_grad_weight_skips_the_padding(emulated, dtype, shape, memory_format):
    n, c_in, c_out, h, w = shape
    x = torch.randn(n, c_in, h, w, dtype=dtype).contiguous(memory_format=memory_format)
    weight = torch.randn(c_out, c_in, 3, 3, dtype=dtype)
    assert_grad_weight_skips_the_padding(
        lambda dy: emulated.upsample_conv2d_backward(dy.contiguous(memory_format=memory_format), x, weight,
                                                     [False, True, False])[1],
        x, weight, TOLERANCES[dtype][2])
