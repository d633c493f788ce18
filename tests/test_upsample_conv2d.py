"""upsample_conv2d on every backend that runs on CPU tensors, against the plain reference."""

import collections
import math

import pytest
import torch
import torch.nn.functional as F

import stylegan_ops as so
from stylegan_ops.bench import saved_bytes
from conftest import cpu_backend_or_skip
from reference import (LAYOUTS, OpCalls, assert_grad_weight_skips_the_padding, assert_matches_reference,
                       assert_never_waits_for_gpu, assert_only_asked_gradients, output_and_grads, rel_l2,
                       upsample_conv2d_reference)

OP = "upsample_conv2d"
ALL_BACKENDS = ["eager", "native", "triton"]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    return cpu_backend_or_skip(request.param, OP)


def make_inputs(n=2, c_in=3, c_out=4, h=5, w=6, dtype=torch.float64, bias=True):
    x = torch.randn(n, c_in, h, w, dtype=dtype)
    weight = torch.randn(c_out, c_in, 3, 3, dtype=dtype)
    return x, weight, torch.randn(c_out, dtype=dtype) if bias else None


@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 6), (1, 1, 1, 1, 1), (2, 5, 3, 7, 1), (1, 6, 6, 11, 13)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_float64_matches_reference(backend, shape, with_bias):
    x, weight, bias = make_inputs(*shape, bias=with_bias)
    out = so.upsample_conv2d(x, weight, bias, backend=backend)
    n, _, c_out, h, w = shape
    assert out.shape == (n, c_out, 2 * h, 2 * w)
    assert rel_l2(out, upsample_conv2d_reference(x, weight, bias)) < 1e-12


def test_forward_float32_matches_float64_reference(backend):
    x, weight, bias = make_inputs(2, 8, 6, 9, 9, dtype=torch.float32)
    out = so.upsample_conv2d(x, weight, bias, backend=backend)
    assert rel_l2(out, upsample_conv2d_reference(x.double(), weight.double(), bias.double())) < 1e-5


# DESIGN.md §3: NaN and inf propagate as in eager, within two limits of what "as in eager" can mean.
# In the phase kernels (Triton here) an infinite x meets a folded tap as (w_a + w_b)·inf where eager
# adds w_a·inf + w_b·inf: the same outputs are non-finite, but where w_a and w_b differ in sign
# eager's is NaN and theirs ±inf; the native CPU kernel multiplies unfolded taps and matches eager's
# NaN exactly. And a non-finite weight tap on the zero padding gives NaN (0·inf) or nothing
# depending on the convolution (oneDNN skips padding in float32, not in float64), so weights are
# compared on interior outputs only. Folded taps are sums, never products with a fold matrix's
# zeros: an infinite tap folds to ±inf, not NaN.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, in the Triton interpreter
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)], ids=str)
@pytest.mark.parametrize("where,value", [("x", math.nan), ("x", math.inf), ("x", -math.inf), ("weight", math.nan),
                                         ("weight", math.inf), ("bias", -math.inf)])
def test_non_finite_inputs_propagate_as_in_eager(backend, dtype, tol, where, value):
    x, weight, bias = make_inputs(2, 3, 6, 4, 5, dtype=dtype)
    inputs = dict(x=x, weight=weight, bias=bias)
    inputs[where][{"x": (1, 2, 1, 3), "weight": (2, 1, 0, 2), "bias": (3,)}[where]] = value
    out = so.upsample_conv2d(**inputs, backend=backend)
    ref = upsample_conv2d_reference(**inputs)
    if where == "weight":
        out, ref = out[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1]
    finite = ref.isfinite()
    assert not finite.all() and torch.equal(out.isfinite(), finite)
    if backend == "native" or not (where == "x" and math.isinf(value)):
        assert torch.equal(out.isnan(), ref.isnan())
    assert rel_l2(out[finite], ref[finite]) < tol


def _grad_weight_of(x, weight, backend):
    """dy -> d weight through the public function and autograd."""
    def grad_weight_of(grad_y):
        w = weight.detach().requires_grad_()
        return torch.autograd.grad(so.upsample_conv2d(x, w, backend=backend), w, grad_y)[0]
    return grad_weight_of


# The kernels' d weight sums over x's pixels only; eager's depends on its convolution (oneDNN skips
# the padding in float32, not in float64).
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, in the Triton interpreter
def test_grad_weight_skips_the_padding(backend):
    if backend == "eager":
        pytest.skip("eager's convolution decides")
    x, weight, _ = make_inputs(2, 3, 8, 5, 7, dtype=torch.float32)
    assert_grad_weight_skips_the_padding(_grad_weight_of(x, weight, backend), x, weight, 1e-4)


GOOD = dict(zip(["x", "weight", "bias"], make_inputs(dtype=torch.float32)))
BAD_INPUTS = [
    (dict(x=torch.randn(3, 5, 6)), ValueError, "x must have shape"),
    (dict(weight=torch.randn(4, 3, 5, 5)), ValueError, "weight must have shape"),
    (dict(weight=torch.randn(4, 2, 3, 3)), ValueError, "weight must have shape"),
    (dict(weight=torch.randn(4, 3, 3)), ValueError, "weight must have shape"),
    (dict(bias=torch.randn(5)), ValueError, "bias must have shape"),
    (dict(x=torch.randint(0, 3, (2, 3, 5, 6))), TypeError, "x must be float16"),
    (dict(weight=torch.randn(4, 3, 3, 3, dtype=torch.float16)), TypeError, "weight has dtype"),
    (dict(bias=torch.randn(4, device="meta")), RuntimeError, "bias is on meta"),
    # F.interpolate and F.conv2d refuse these as well.
    (dict(x=torch.randn(2, 0, 5, 6), weight=torch.randn(4, 0, 3, 3)), ValueError, "x must have at least one channel"),
    (dict(x=torch.randn(2, 3, 0, 6)), ValueError, "x must have at least one channel and pixel"),
    (dict(weight=torch.randn(0, 3, 3, 3)), ValueError, "weight must have at least one output channel"),
]


@pytest.mark.parametrize("overrides,error,match", BAD_INPUTS)
def test_bad_input_names_the_argument(backend, overrides, error, match):
    with pytest.raises(error, match=match):
        so.upsample_conv2d(**{**GOOD, **overrides}, backend=backend)


@pytest.mark.parametrize("overrides,error,match", [case for case in BAD_INPUTS
                                                   if not any(t.is_meta for t in case[0].values())])
def test_triton_library_ops_refuse_bad_input(overrides, error, match):
    """Called directly (no public function's checks before them), the Triton ops refuse bad input
    as the native ones do: a bad shape must not reach a kernel. (Mixed devices go to the Meta
    kernel first, so that case is the public function's.)"""
    cpu_backend_or_skip("triton", OP)
    inputs = {**GOOD, **overrides}
    with pytest.raises(error, match=match):
        torch.ops.stylegan_ops.upsample_conv2d_triton(inputs["x"], inputs["weight"], inputs["bias"])
    x, weight = GOOD["x"], GOOD["weight"]
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 4, 10, 12\)"):
        torch.ops.stylegan_ops.upsample_conv2d_triton_backward(torch.randn(2, 4, 10, 11), x, weight, [True, True, True])


def test_library_op_refuses_zero_channels():
    # Below the Python checks, the library op refuses it too: a direct torch.ops call gets the
    # contract's error, not whatever the kernels would make of 0 channels.
    cpu_backend_or_skip("native", OP)
    with pytest.raises(RuntimeError, match="x must have at least one channel"):
        torch.ops.stylegan_ops.upsample_conv2d(torch.randn(1, 0, 3, 3), torch.randn(4, 0, 3, 3), None)


@pytest.mark.parametrize("library_backend", ["native", "triton"])
def test_library_backward_of_empty_batch_is_zero(library_backend):
    # The public function answers an empty batch with eager's result before any kernel runs; the
    # library op, called directly, sums d weight and d bias over no pixels: zeros, not uninitialised
    # memory (and the Triton dx has no pixels to share out over programs).
    cpu_backend_or_skip(library_backend, OP)
    backward_op = getattr(torch.ops.stylegan_ops, {"native": "upsample_conv2d_backward",
                                                   "triton": "upsample_conv2d_triton_backward"}[library_backend])
    x, weight, _ = make_inputs(n=0)
    grad_x, grad_weight, grad_bias = backward_op(torch.randn(0, 4, 10, 12, dtype=torch.float64), x, weight,
                                                 [True, True, True])
    assert grad_x.shape == x.shape
    assert torch.equal(grad_weight, torch.zeros_like(weight)) and torch.equal(grad_bias, torch.zeros(4).double())


# ---- layouts, gradients ----------------------------------------------------------------------------
NAMES = ["x", "weight", "bias"]
GRAD_SUBSETS = [NAMES, ["x"], ["weight"], ["bias"], ["weight", "bias"]]


def _grads(fn, inputs, wrt, grad_y):
    return output_and_grads(fn, inputs, NAMES, wrt, grad_y)


def test_empty_batch_matches_eager(backend):
    inputs = make_inputs(n=0)
    grad_y = torch.randn(0, 4, 10, 12, dtype=torch.float64)
    y, grads = _grads(lambda *a: so.upsample_conv2d(*a, backend=backend), inputs, NAMES, grad_y)
    y_ref, grads_ref = _grads(upsample_conv2d_reference, inputs, NAMES, grad_y)
    assert y.shape == y_ref.shape == (0, 4, 10, 12)
    for got, want in zip(grads, grads_ref):
        assert torch.equal(got, want)  # zero-size, or all zeros for weight and bias


# (x layout, weight layout, C_in): the output is laid out as F.conv2d lays it out, channels_last
# when x or weight is; C_in = 1 makes a channels_last x also plain contiguous.
LAYOUT_CASES = [(x_layout, "contiguous", 3) for x_layout in LAYOUTS] + [
    ("contiguous", "channels_last", 3), ("channels_last", "channels_last", 3), ("channels_last", "contiguous", 1)]


def _layout_inputs(x_layout, weight_layout, c_in, device="cpu", dtype=torch.float64):
    x, weight, bias = (t.to(device) for t in make_inputs(2, c_in, 4, 5, 6, dtype=dtype))
    return LAYOUTS[x_layout][0](x), LAYOUTS[weight_layout][0](weight), bias


@pytest.mark.parametrize("x_layout,weight_layout,c_in", LAYOUT_CASES)
def test_layouts_follow_conv2d(backend, x_layout, weight_layout, c_in):
    x, weight, bias = _layout_inputs(x_layout, weight_layout, c_in)
    out = so.upsample_conv2d(x, weight, bias, backend=backend)
    eager = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)
    assert out.stride() == eager.stride()
    assert rel_l2(out, upsample_conv2d_reference(x, weight, bias)) < 1e-12


@pytest.mark.parametrize("x_layout,weight_layout,c_in", LAYOUT_CASES)
def test_gradients_take_their_inputs_layouts(backend, x_layout, weight_layout, c_in):
    """d weight comes back in the weight's memory format, as cuDNN's does: autograd then keeps it as
    the parameter's .grad, where one in another layout is copied into the parameter's after every
    backward (a kernel and an allocation a step for each channels_last conv weight)."""
    if backend == "eager":
        pytest.skip("eager's layouts are PyTorch's (oneDNN gives a channels_last d weight for a channels_last x)")
    x, weight, bias = (t.requires_grad_() for t in _layout_inputs(x_layout, weight_layout, c_in))
    out = so.upsample_conv2d(x, weight, bias, backend=backend)
    grad_x, grad_weight, _ = torch.autograd.grad(out, (x, weight, bias), torch.randn_like(out))
    assert grad_x.is_contiguous(memory_format=LAYOUTS[x_layout][1])
    assert grad_weight.is_contiguous(memory_format=LAYOUTS[weight_layout][1])


def test_non_contiguous_inputs(backend):
    x, weight, bias = make_inputs(2, 3, 4, 5, 6)
    x_t = x.transpose(2, 3).contiguous().transpose(2, 3)
    weight_t = weight.transpose(0, 1).contiguous().transpose(0, 1)
    bias_s = torch.randn(8, dtype=torch.float64)[::2]
    out = so.upsample_conv2d(x_t, weight_t, bias_s, backend=backend)
    assert rel_l2(out, upsample_conv2d_reference(x, weight, bias_s)) < 1e-12


def _assert_float64_grads_match_reference(backend, shape, wrt, layout="contiguous", grad_y=None):
    """y and the gradients in ``wrt``, x and dy in ``layout`` (LAYOUTS); dy random unless given."""
    n, c_in, c_out, h, w = shape
    x, weight, bias = make_inputs(n, c_in, c_out, h, w)
    inputs = LAYOUTS[layout][0](x), weight, bias
    if grad_y is None:
        grad_y = LAYOUTS[layout][0](torch.randn(n, c_out, 2 * h, 2 * w, dtype=torch.float64))
    y, got = _grads(lambda *a: so.upsample_conv2d(*a, backend=backend), inputs, wrt, grad_y)
    y_ref, want = _grads(upsample_conv2d_reference, inputs, wrt, grad_y)
    assert rel_l2(y, y_ref) < 1e-12, "y"
    for name, g, r in zip(wrt, got, want):
        assert rel_l2(g, r) < 1e-12, name


@pytest.mark.parametrize("wrt", GRAD_SUBSETS, ids="+".join)
def test_gradients_float64_match_reference(backend, wrt):
    _assert_float64_grads_match_reference(backend, (2, 3, 4, 5, 6), wrt)


def test_gradients_of_a_broadcast_grad_y(backend):
    """dy with every stride 0, as y.sum() hands back: the backward reads it through its strides
    (the window means of Triton and CUDA included)."""
    grad_y = torch.ones((), dtype=torch.float64).expand(2, 4, 10, 12)
    _assert_float64_grads_match_reference(backend, (2, 3, 4, 5, 6), NAMES, grad_y=grad_y)


def test_triton_fold_refuses_weights_past_32_bit_indices():
    """16 folded taps of 16384 x 8192 filter pairs are 2^31 elements: a clear error, not a wrapped index."""
    pytest.importorskip("triton")
    from stylegan_ops.triton import upsample_conv2d as triton_upsample

    with pytest.raises(RuntimeError, match="32-bit indices"):
        triton_upsample._fold(torch.empty(16384, 8192, 3, 3, device="meta"))


def test_triton_divmod_by_multiply_high_is_exact():
    """d weight and the window means split pixel indices into (n, i, j) by _divmod's multiply-high,
    exact for every int32 index p >= 0: checked against integer division for divisors around powers
    of two and the generator's planes, up to 2^31 - 1, where 2p and the magic number use bit 31 (a
    signed multiply there would be wrong); and int64 indices past 2^31, divided in int64."""
    cpu_backend_or_skip("triton", OP)
    import triton
    import triton.language as tl

    global _divmod  # a kernel's callees are looked up among its module's globals
    from stylegan_ops.triton import upsample_conv2d as triton_upsample
    from stylegan_ops.triton.upsample_conv2d import _divmod

    @triton.jit
    def divmod_kernel(P, Q, R, d, magic, shift, INDEX: tl.constexpr, BLOCK: tl.constexpr):
        p = tl.load(P + tl.arange(0, BLOCK))
        q, r = _divmod(p, d, magic, shift, INDEX)
        tl.store(Q + tl.arange(0, BLOCK), q)
        tl.store(R + tl.arange(0, BLOCK), r)

    generator = torch.Generator().manual_seed(0)
    largest = 2**31 - 1
    for d in (1, 2, 3, 5, 7, 8, 9, 63, 64, 65, 1000, 4096, 65536, 1 << 20, 3 * 10**8, 2**30 + 1, largest):
        p = torch.cat([torch.arange(64), torch.tensor([d - 1, d, d + 1, 2**30, largest - 1, largest]),
                       torch.randint(0, 2**31, (186,), generator=generator)]).clamp(max=largest).to(torch.int32)
        p64 = torch.cat([p[:128].to(torch.int64), torch.randint(2**31, 2**42, (128,), generator=generator)])
        for index, indices in ((tl.int32, p), (tl.int64, p64)):
            q, r = torch.empty_like(indices), torch.empty_like(indices)
            divmod_kernel[(1,)](indices, q, r, d, *triton_upsample._division_magic(d), INDEX=index, BLOCK=p.numel())
            want = indices.to(torch.int64)
            assert torch.equal(q.to(torch.int64), want // d) and torch.equal(r.to(torch.int64), want % d), (d, index)


@pytest.mark.parametrize("offsets", ["int32", "int64"])
@pytest.mark.parametrize("layout, channels, h, w", [("contiguous", 3, 14, 11), ("channels_last", 70, 3, 5)])
def test_triton_window_means_of_several_pixel_tiles(monkeypatch, offsets, layout, channels, h, w):
    """dx's and d weight's A (the means of dy's 2x2 windows: avg_pool2d(dy, 2, stride=1, padding=1))
    and d bias, from _window_means_kernel, whose programs take four pixel tiles each. NCHW: tiles of
    4 channels by 256 pixels, 1334 pixels of A (two samples of 29 x 23) in two programs, the first
    across the samples, the second ending in empty tiles; channels_last: 16 pixels by 64 channels,
    154 pixels in three programs, 70 channels in two blocks, the second partial. Pixel indices split
    in int32 by multiply-high, and (the limit lowered to 0) in int64."""
    cpu_backend_or_skip("triton", OP)
    from stylegan_ops.triton import upsample_conv2d as triton_upsample

    if offsets == "int64":
        monkeypatch.setattr(triton_upsample, "INT32_INDICES_BELOW", 0)
    grad_y = LAYOUTS[layout][0](torch.randn(2, channels, 2 * h, 2 * w, dtype=torch.float64))
    window_means, grad_bias = triton_upsample._window_means(grad_y, with_grad_bias=True)
    assert window_means.is_contiguous(memory_format=LAYOUTS[layout][1])
    assert rel_l2(window_means, F.avg_pool2d(grad_y, 2, stride=1, padding=1)) < 1e-12
    assert rel_l2(grad_bias, grad_y.sum(dim=(0, 2, 3))) < 1e-12


@pytest.mark.parametrize("indices", ["int32", "int64"])
def test_triton_kernels_take_their_index_dtype(monkeypatch, indices):
    """The kernels that index pixels compute their pixel indices (and d weight's and the window
    means' offsets) in int32 unless a program's pixel indices or a tensor's offsets reach 2^31
    (_index_dtype; its bounds checked here); with that limit lowered to 0 all four get int64 and
    run it here (a layout whose channels are not innermost, and one whose are), matching the
    reference as the int32 kernels do. On a GPU, test_gpu_pixels_past_2_31 runs them past 2^31."""
    cpu_backend_or_skip("triton", OP)
    import triton.language as tl

    from stylegan_ops.triton import upsample_conv2d as triton_upsample

    def spanning(elements):  # a tensor whose last element lies elements - 1 from its first
        return torch.empty(2, elements // 2, dtype=torch.int8, device="meta")

    largest_int32_pixels = 2**31 - triton_upsample.PIXEL_OVERHANG
    assert triton_upsample._index_dtype(largest_int32_pixels, torch.empty(2, 3), spanning(2**31)) == tl.int32
    assert triton_upsample._index_dtype(largest_int32_pixels + 1) == tl.int64
    assert triton_upsample._index_dtype(1, torch.empty(2, 3), spanning(2**31 + 2)) == tl.int64

    index = dict(int32=tl.int32, int64=tl.int64)[indices]
    if index == tl.int64:
        monkeypatch.setattr(triton_upsample, "INT32_INDICES_BELOW", 0)
    launched = collections.defaultdict(set)  # kernel name -> the INDEX arguments it was launched with

    class Recorded:
        def __init__(self, name):
            self.name, self.kernel = name, getattr(triton_upsample, name)

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launched[self.name].add(kwargs["INDEX"])
                return self.kernel[grid](*args, **kwargs)
            return launch

    names = ("_forward_kernel", "_window_means_kernel", "_grad_x_kernel", "_grad_weight_kernel")
    for name in names:
        monkeypatch.setattr(triton_upsample, name, Recorded(name))
    for layout in ("contiguous", "channels_last"):
        _assert_float64_grads_match_reference("triton", (2, 5, 3, 4, 6), NAMES, layout=layout)
    assert launched == {name: {index} for name in names}


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_triton_whole_channel_blocks_need_no_channel_mask(layout):
    """64 channels each side: the forward's and dx's channel blocks tile them exactly (_even_k),
    and their loads go without a channel mask (y and dx checked)."""
    cpu_backend_or_skip("triton", OP)
    from stylegan_ops.triton import upsample_conv2d as triton_upsample

    assert triton_upsample._even_k(64) and not triton_upsample._even_k(96)
    _assert_float64_grads_match_reference("triton", (1, 64, 64, 3, 2), ("x",), layout=layout)


def test_weight_gradient_split_over_pixels(backend, monkeypatch):
    """2048 low-resolution pixels on a GPU of 132 SMs: the Triton d weight GEMM splits its K (pixels)
    over 2 programs, whose partials are summed in order."""
    if backend == "triton":
        from stylegan_ops.triton import upsample_conv2d as triton_upsample

        monkeypatch.setattr(triton_upsample, "multiprocessor_count", lambda device: 132)
        assert triton_upsample._grad_weight_split(2, 3, 4, 32, 32, torch.device("cpu")) == 2
    _assert_float64_grads_match_reference(backend, (2, 3, 4, 32, 32), NAMES)


def test_triton_weight_gradient_sum_spans_blocks(monkeypatch):
    """Triton's d weight sums 3 pixel shares (every one nonempty: 64 pixels, 16 a step) and writes
    the weight's layout in blocks of 32 output channels x 128 entries 9c + tap: 33 output and 17
    input channels (153 entries) take two blocks along each axis, the second ones partial."""
    cpu_backend_or_skip("triton", OP)
    from stylegan_ops.triton import upsample_conv2d as triton_upsample

    assert (triton_upsample.SUM_BLOCK_O, triton_upsample.SUM_BLOCK_Q) == (32, 128)
    monkeypatch.setattr(triton_upsample, "_grad_weight_split", lambda *shape: 3)
    _assert_float64_grads_match_reference("triton", (1, 17, 33, 8, 8), ("weight",))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_input_gradient_split_over_steps(backend, layout, monkeypatch):
    """512 low-resolution pixels and 3 input channels (8 tiles of 64x64) on the CPU stand-in of 4
    SMs: the Triton dx GEMM shares its 9 * C_out steps out over 2 programs per tile, whose partials,
    laid out as dx, are summed afterwards. On an H100 the generator's 8x8 level at batch 8 and 512
    channels (64 tiles) splits 8 ways, its 16x16 level 2 ways, and 32x32 not at all."""
    _assert_float64_grads_match_reference(backend, (2, 3, 4, 16, 16), NAMES, layout)
    if backend == "triton":
        from stylegan_ops.triton import upsample_conv2d as triton_upsample

        cpu = torch.device("cpu")
        assert triton_upsample._grad_x_split(2, 3, 16, 16, cpu) == 2
        monkeypatch.setattr(triton_upsample, "multiprocessor_count", lambda device: 132)
        assert [triton_upsample._grad_x_split(8, 512, s, s, cpu) for s in (8, 16, 32)] == [8, 2, 1]


# The native CPU kernel runs its GEMM and gather (scatter) over blocks of about 1 MiB of Z, 9 C_out
# values per pixel of x, and at least 16 rows of x (csrc/cpu/upsample_conv2d_kernel.cpp). In float64
# with C_out = 8 and W = 40 a row of Z is 23 KiB, a block 45 rows: H = 100 splits each sample into
# the bands [0, 45), [45, 90), [90, 100) (the forward's recomputing their neighbours' edge rows),
# H = 20 puts two whole samples in a block (5 samples: blocks of 2, 2 and 1).
@pytest.mark.parametrize("shape", [(2, 3, 8, 100, 40), (5, 3, 8, 20, 40)], ids=["row_bands", "sample_blocks"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_native_cpu_blocks_match_reference(shape, layout):
    cpu_backend_or_skip("native", OP)
    n, c_in, c_out, h, w = shape
    x, weight, bias = make_inputs(n, c_in, c_out, h, w)
    inputs = [LAYOUTS[layout][0](x), weight, bias]
    grad_y = LAYOUTS[layout][0](torch.randn(n, c_out, 2 * h, 2 * w, dtype=torch.float64))
    y, got = _grads(lambda *a: so.upsample_conv2d(*a, backend="native"), inputs, NAMES, grad_y)
    y_ref, want = _grads(upsample_conv2d_reference, inputs, NAMES, grad_y)
    assert rel_l2(y, y_ref) < 1e-12
    for name, g, r in zip(NAMES, got, want):
        assert rel_l2(g, r) < 1e-12, name


def test_gradients_without_bias(backend):
    x, weight, _ = make_inputs(2, 3, 4, 5, 6, bias=False)
    grad_y = torch.randn(2, 4, 10, 12, dtype=torch.float64)
    x.requires_grad_(), weight.requires_grad_()
    gx, gw = torch.autograd.grad(so.upsample_conv2d(x, weight, None, backend=backend), (x, weight), grad_y)
    rx, rw = torch.autograd.grad(upsample_conv2d_reference(x, weight, None), (x, weight), grad_y)
    assert rel_l2(gx, rx) < 1e-12 and rel_l2(gw, rw) < 1e-12


# Backward needs only x and the weight, both inputs: the fused backends save nothing else (no
# upsampled tensor), where eager keeps the 4x larger upsampled x.
def test_backward_saves_nothing_but_the_inputs(backend):
    inputs = [t.requires_grad_() for t in make_inputs(2, 3, 4, 5, 6, dtype=torch.float32)]

    def step():
        so.upsample_conv2d(*inputs, backend=backend).sum().backward()

    saved = saved_bytes(step, inputs)
    assert saved == (4 * inputs[0].nbytes if backend == "eager" else 0)


def test_gradients_float32_match_float64_reference(backend):
    inputs = make_inputs(2, 8, 6, 9, 7, dtype=torch.float32)
    grad_y = torch.randn(2, 6, 18, 14)
    _, got = _grads(lambda *a: so.upsample_conv2d(*a, backend=backend), inputs, NAMES, grad_y)
    _, want = _grads(upsample_conv2d_reference, [t.double() for t in inputs], NAMES, grad_y.double())
    for name, g, r in zip(NAMES, got, want):
        assert g.dtype == torch.float32 and rel_l2(g, r) < 1e-4, name


@pytest.mark.parametrize("dtype,fwd_tol,grad_tol", [(torch.float16, 2e-3, 5e-3), (torch.bfloat16, 1e-2, 2e-2)])
def test_reduced_precision_against_float32_reference(backend, dtype, fwd_tol, grad_tol):
    inputs = make_inputs(2, 8, 6, 5, 5, dtype=dtype)
    grad_y = torch.randn(2, 6, 10, 10, dtype=dtype)
    assert_matches_reference(lambda *a: so.upsample_conv2d(*a, backend=backend), upsample_conv2d_reference, inputs,
                             NAMES, grad_y, torch.float32, fwd_tol, grad_tol)


def test_gradcheck_and_gradgradcheck(backend):
    inputs = [t.requires_grad_() for t in make_inputs(1, 2, 3, 3, 2)]
    fn = lambda *a: so.upsample_conv2d(*a, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


def test_backward_composite_matches_backward_kernel():
    """Double backward differentiates the composite: its values must be the first derivative's."""
    cpu_backend_or_skip("native", "upsample_conv2d")
    x, weight, _ = make_inputs(2, 3, 4, 5, 6)
    grad_y = torch.randn(2, 4, 10, 12, dtype=x.dtype)
    kernel = torch.ops.stylegan_ops.upsample_conv2d_backward(grad_y, x, weight, [True, True, True])
    composite = torch.ops.stylegan_ops.upsample_conv2d_backward_composite(grad_y, x, weight)
    for name, got, want in zip(("x", "weight", "bias"), composite, kernel):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=lambda m: f"d {name}: {m}")


LIBRARY_OPS = {"native": "upsample_conv2d", "triton": "upsample_conv2d_triton"}


def test_opcheck(backend):
    if backend == "eager":
        pytest.skip("eager is plain PyTorch, not a library op")
    op = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[backend])
    backward = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[backend] + "_backward").default
    for with_bias in (True, False):
        x, weight, bias = make_inputs(2, 3, 4, 3, 5, bias=with_bias)
        torch.library.opcheck(op.default, (x.requires_grad_(), weight.requires_grad_(), bias))
    grad_y = torch.randn(2, 4, 6, 10, dtype=torch.float64)
    for output_mask in ([True, True, True], [True, False, False], [False, True, True], [False, False, True]):
        torch.library.opcheck(backward, (grad_y, x.detach(), weight.detach(), output_mask),
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.parametrize("output_mask", [[True, False, False], [False, True, False], [False, False, True]],
                         ids=["grad_x", "grad_weight", "grad_bias"])
def test_backward_computes_only_the_gradients_asked_for(backend, output_mask):
    """A frozen weight (or x) skips its GEMM, a conv without bias the sum over grad_y: the op returns
    an empty tensor in the place of each gradient not asked for, the others as with all asked for."""
    if backend == "eager":
        pytest.skip("eager is plain PyTorch, not a library op")
    backward = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[backend] + "_backward")
    x, weight, _ = make_inputs(2, 3, 4, 5, 6)
    grad_y = torch.randn(2, 4, 10, 12, dtype=x.dtype)
    full = backward(grad_y, x, weight, [True, True, True])
    assert_only_asked_gradients(output_mask, backward(grad_y, x, weight, output_mask), full, bias_rtol=1e-12)


@pytest.mark.parametrize("trainable,with_bias", [("x", True), ("weight", True), ("bias", True), ("x", False)])
def test_autograd_asks_only_for_the_gradients_it_needs(backend, trainable, with_bias):
    if backend == "eager":
        pytest.skip("eager is plain PyTorch, not a library op")
    x, weight, bias = make_inputs(2, 3, 4, 5, 6, bias=with_bias)
    inputs = {"x": x, "weight": weight, "bias": bias}
    inputs[trainable].requires_grad_()
    grad_y = torch.randn(2, 4, 10, 12, dtype=x.dtype)
    with OpCalls() as ops:
        (got,) = torch.autograd.grad(so.upsample_conv2d(x, weight, bias, backend=backend), (inputs[trainable],),
                                     grad_y)
    masks = [list(args[3]) for func, args, _ in ops.calls
             if func._opname in ("upsample_conv2d_backward", "upsample_conv2d_triton_backward")]
    assert masks == [[name == trainable for name in inputs]]
    (want,) = torch.autograd.grad(upsample_conv2d_reference(x, weight, bias), (inputs[trainable],), grad_y)
    assert rel_l2(got, want) < 1e-12


# The fake ops must predict the strides the kernels write in every layout (opcheck compares them).
@pytest.mark.parametrize("x_layout,weight_layout,c_in", LAYOUT_CASES)
def test_fake_strides_match_kernels(backend, x_layout, weight_layout, c_in):
    if backend == "eager":
        pytest.skip("eager is plain PyTorch, not a library op")
    op = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[backend]).default
    backward = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[backend] + "_backward").default
    x, weight, bias = _layout_inputs(x_layout, weight_layout, c_in)
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(op, (x, weight, bias), test_utils=checks)
    torch.library.opcheck(backward, (op(x, weight, bias), x, weight, [True, True, True]), test_utils=checks)


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # vmap's per-sample loop
def test_vmap_runs_sample_by_sample(backend):
    x, weight, bias = make_inputs(3, 2, 4, 3, 5)
    out = torch.func.vmap(lambda xs: so.upsample_conv2d(xs, weight, bias, backend=backend))(x.unsqueeze(1))
    assert rel_l2(out.squeeze(1), upsample_conv2d_reference(x, weight, bias)) < 1e-12


def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    fn = torch.compile(lambda *a: so.upsample_conv2d(*a, backend=backend), fullgraph=True, backend="aot_eager")
    inputs = [t.requires_grad_() for t in make_inputs(2, 3, 4, 5, 4)]
    y = fn(*inputs)
    grads = torch.autograd.grad(y.square().sum(), inputs)
    y_ref = upsample_conv2d_reference(*inputs)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), inputs)
    assert rel_l2(y, y_ref) < 1e-12
    for g, r in zip(grads, grads_ref):
        assert rel_l2(g, r) < 1e-12


# ---- GPU (skipped without one; run by the GPU suite) ---------------------------------------------
GPU_SHAPES = [(8, 512, 512, 8, 8), (8, 512, 512, 16, 16), (8, 512, 512, 32, 32), (8, 256, 128, 64, 64),
              (2, 32, 16, 512, 512)]


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize(
    "dtype,fwd_tol,grad_tol", [(torch.float32, 1e-5, 1e-4), (torch.float16, 2e-3, 5e-3), (torch.bfloat16, 1e-2, 2e-2)]
)
def test_gpu_against_reference(gpu_backend, shape, memory_format, dtype, fwd_tol, grad_tol):
    if gpu_backend not in so.available_backends("cuda"):
        pytest.fail(f"{gpu_backend} cannot run on this GPU machine")
    ref_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    x, weight, bias = (t.cuda() for t in make_inputs(*shape, dtype=dtype))
    x = x.contiguous(memory_format=memory_format)
    n, _, c_out, h, w = shape
    grad_y = torch.randn(n, c_out, 2 * h, 2 * w, device="cuda", dtype=dtype)
    y, _ = assert_matches_reference(lambda *a: so.upsample_conv2d(*a, backend=gpu_backend), upsample_conv2d_reference,
                                    (x, weight, bias), NAMES, grad_y, ref_dtype, fwd_tol, grad_tol)
    assert y.is_contiguous(memory_format=memory_format)


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_float32_stays_exact_with_tf32_allowed(gpu_backend, monkeypatch):
    # Nothing on the float32 path (weight folding, GEMMs) may pick up a user's global TF32 switch.
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    x, weight, bias = (t.cuda() for t in make_inputs(2, 64, 64, 16, 16, dtype=torch.float32))
    grad_y = torch.randn(2, 64, 32, 32, device="cuda")
    assert_matches_reference(lambda *a: so.upsample_conv2d(*a, backend=gpu_backend), upsample_conv2d_reference,
                             (x, weight, bias), NAMES, grad_y, torch.float64, 1e-5, 1e-4)


# Native only: the CUDA kernels' outputs are allocated in C++, the Triton launchers' by the same
# Python as under the interpreter (and each new stride pattern would cost a Triton compile).
@pytest.mark.gpu
@pytest.mark.parametrize("x_layout,weight_layout,c_in", LAYOUT_CASES)
def test_gpu_layouts_follow_conv2d(x_layout, weight_layout, c_in):
    """Output strides as cuDNN's float32 conv2d, and the fake ops' strides as the kernels' (opcheck)."""
    x, weight, bias = _layout_inputs(x_layout, weight_layout, c_in, device="cuda", dtype=torch.float32)
    out = so.upsample_conv2d(x, weight, bias, backend="native")
    assert out.stride() == F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1).stride()
    assert rel_l2(out, upsample_conv2d_reference(*(t.cpu().double() for t in (x, weight, bias)))) < 1e-5
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(torch.ops.stylegan_ops.upsample_conv2d.default, (x, weight, bias), test_utils=checks)
    torch.library.opcheck(torch.ops.stylegan_ops.upsample_conv2d_backward.default, (out, x, weight, [True] * 3),
                          test_utils=checks)


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_infinite_weight_tap(gpu_backend):
    """As test_non_finite_inputs_propagate_as_in_eager: ±inf on interior outputs where eager's is."""
    x, weight, bias = make_inputs(2, 70, 66, 9, 11, dtype=torch.float32)
    weight[5, 7, 2, 0] = -math.inf
    out = so.upsample_conv2d(x.cuda(), weight.cuda(), bias.cuda(), backend=gpu_backend).cpu()[..., 1:-1, 1:-1]
    ref = upsample_conv2d_reference(x.double(), weight.double(), bias.double())[..., 1:-1, 1:-1]
    assert out.isinf().any() and torch.equal(out.isinf(), ref.isinf()) and torch.equal(out.isnan(), ref.isnan())


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
@pytest.mark.parametrize("dtype,grad_tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)], ids=str)
def test_gpu_grad_weight_skips_the_padding(gpu_backend, dtype, grad_tol):
    """As test_grad_weight_skips_the_padding, at sizes that leave the CUDA kernel's tiles overhanging."""
    x, weight, _ = make_inputs(2, 70, 66, 9, 17, dtype=dtype)
    x, weight = (t.cuda().contiguous(memory_format=torch.channels_last) for t in (x, weight))
    assert_grad_weight_skips_the_padding(_grad_weight_of(x, weight, gpu_backend), x, weight, grad_tol)


# Odd sizes on the GPU: partial tiles and channel blocks, 1x1 inputs, C not a multiple of 8 or 64.
GPU_ODD_SHAPES = [(2, 3, 4, 5, 6), (1, 1, 1, 1, 1), (2, 5, 3, 7, 1), (1, 70, 66, 11, 13), (3, 130, 20, 9, 17)]


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
@pytest.mark.parametrize("shape", GPU_ODD_SHAPES, ids=str)
@pytest.mark.parametrize("dtype,fwd_tol,grad_tol", [(torch.float64, 1e-12, 1e-12), (torch.bfloat16, 1e-2, 2e-2)])
def test_gpu_odd_shapes(gpu_backend, shape, dtype, fwd_tol, grad_tol):
    ref_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    x, weight, bias = (t.cuda() for t in make_inputs(*shape, dtype=dtype))
    n, _, c_out, h, w = shape
    grad_y = torch.randn(n, c_out, 2 * h, 2 * w, device="cuda", dtype=dtype)
    assert_matches_reference(lambda *a: so.upsample_conv2d(*a, backend=gpu_backend), upsample_conv2d_reference,
                             (x, weight, bias), NAMES, grad_y, ref_dtype, fwd_tol, grad_tol)


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
# Split K on an H100 (float32), each split summed in a fixed order: at 8x8 the CUDA forward into
# 2 shares (64 blocks of one per SM), CUDA dx into 8 (32 blocks of two per SM), Triton dx into 8;
# at 32x32 CUDA dx, Triton dx and Triton d weight into 4, CUDA d weight into 11.
@pytest.mark.parametrize("shape", [(4, 128, 96, 32, 32), (8, 512, 512, 8, 8)], ids=str)
def test_gpu_backward_is_deterministic(gpu_backend, shape):
    n, c_in, c_out, h, w = shape
    x, weight, bias = (t.cuda() for t in make_inputs(n, c_in, c_out, h, w, dtype=torch.float32))
    grad_y = torch.randn(n, c_out, 2 * h, 2 * w, device="cuda")
    first = _grads(lambda *a: so.upsample_conv2d(*a, backend=gpu_backend), (x, weight, bias), NAMES, grad_y)[1]
    second = _grads(lambda *a: so.upsample_conv2d(*a, backend=gpu_backend), (x, weight, bias), NAMES, grad_y)[1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gpu_calls_never_wait_for_the_gpu(gpu_backend, memory_format):
    x, weight, bias = (t.cuda() for t in make_inputs(4, 64, 64, 16, 16, dtype=torch.bfloat16))
    assert_never_waits_for_gpu(lambda *a: so.upsample_conv2d(*a, backend=gpu_backend),
                               (x.contiguous(memory_format=memory_format), weight, bias),
                               torch.randn(4, 64, 32, 32, device="cuda", dtype=torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.large_gpu_memory
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_offsets_past_2_31_elements(gpu_backend):
    """64-bit indexing: x (and dx) have 17 * 2048 * 256 * 256 > 2^31 elements (bfloat16, 4.3 GiB);
    the last image, whose offsets all lie past 2^31, against the reference on that image alone."""
    n, c_in, c_out, h, w = 17, 2048, 8, 256, 256
    x = torch.randn(n, c_in, h, w, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(c_out, c_in, 3, 3, device="cuda", dtype=torch.bfloat16) / 40
    x.requires_grad_()
    y = so.upsample_conv2d(x, weight, None, backend=gpu_backend)
    grad_y = torch.randn_like(y)
    (grad_x,) = torch.autograd.grad(y, (x,), grad_y)
    last = x.detach()[-1:].float().requires_grad_()
    y_ref = upsample_conv2d_reference(last, weight.float())
    (grad_x_ref,) = torch.autograd.grad(y_ref, (last,), grad_y[-1:].float())
    assert rel_l2(y[-1:], y_ref) < 1e-2
    assert rel_l2(grad_x[-1:], grad_x_ref) < 2e-2


@pytest.mark.gpu
@pytest.mark.large_gpu_memory
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_pixels_past_2_31(gpu_backend):
    """64-bit pixel indices: x of 2049 one-channel images of 1024 x 1024 pixels, the last image's
    pixels all past 2^31 (bfloat16: x 4 GiB; y, dy and the window means 16 GiB each). x and dy are
    zero but for that image, so y is the bias elsewhere, dx is zero elsewhere, and d weight and d
    bias are that image's alone: all against the reference on that image, where an index wrapped
    in 32 bits would land in the first images instead."""
    n, h, w = 2049, 1024, 1024
    x = torch.zeros(n, 1, h, w, device="cuda", dtype=torch.bfloat16)
    x[-1].normal_()
    weight = torch.randn(1, 1, 3, 3, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(1, device="cuda", dtype=torch.bfloat16)
    inputs = [t.requires_grad_() for t in (x, weight, bias)]
    y = so.upsample_conv2d(*inputs, backend=gpu_backend)
    grad_y = torch.zeros_like(y)
    grad_y[-1].normal_()
    grads = torch.autograd.grad(y, inputs, grad_y)
    last = [t.detach().float().requires_grad_() for t in (x[-1:], weight, bias)]
    y_ref = upsample_conv2d_reference(*last)
    grads_ref = torch.autograd.grad(y_ref, last, grad_y[-1:].float())
    assert rel_l2(y[-1:], y_ref) < 1e-2
    assert [v.item() for v in torch.aminmax(y[:-1])] == [bias.item()] * 2
    assert not grads[0][:-1].any()
    for name, got, want in zip(NAMES, (grads[0][-1:], *grads[1:]), grads_ref):
        assert rel_l2(got, want) < 2e-2, name
