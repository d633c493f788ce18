"""noise_adain_lrelu on every backend that runs on CPU tensors, against the plain reference."""

import math

import pytest
import torch
import torch.nn.functional as F

import stylegan_ops as so
from stylegan_ops.bench import saved_bytes
from conftest import cpu_backend_or_skip
from reference import (LAYOUTS, OpCalls, assert_matches_reference, assert_never_waits_for_gpu,
                       noise_adain_lrelu_reference, output_and_grads, rel_l2)

OP = "noise_adain_lrelu"
ALL_BACKENDS = ["eager", "native", "triton"]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    return cpu_backend_or_skip(request.param, OP)


def make_inputs(n=2, c=3, h=5, w=7, dtype=torch.float64, noise=True, weight_4d=False):
    x = torch.randn(n, c, h, w, dtype=dtype) * 2 + 0.5
    noise_t = torch.randn(n, 1, h, w, dtype=dtype) if noise else None
    noise_weight = torch.randn(c, dtype=dtype)
    if weight_4d:
        noise_weight = noise_weight.view(1, c, 1, 1)
    return x, noise_t, noise_weight, torch.randn(n, c, dtype=dtype), torch.randn(n, c, dtype=dtype)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 1, 9), (3, 2, 11, 1), (2, 5, 13, 17)])
@pytest.mark.parametrize("with_noise", [True, False])
def test_forward_float64_matches_reference(backend, shape, with_noise):
    args = make_inputs(*shape, noise=with_noise)
    out = so.noise_adain_lrelu(*args, eps=1e-5, negative_slope=0.2, backend=backend)
    assert out.shape == args[0].shape and out.dtype == torch.float64
    assert rel_l2(out, noise_adain_lrelu_reference(*args)) < 1e-12


# Planes in full groups of 8 (the CPU kernel's float32 vector width), in a partial last group with
# plane sizes not a multiple of 8, and planes large enough to go one by one.
@pytest.mark.parametrize("shape", [(2, 4, 16, 16), (3, 7, 5, 9), (1, 2, 48, 48)])
def test_forward_float32_matches_float64_reference(backend, shape):
    args = make_inputs(*shape, dtype=torch.float32)
    out = so.noise_adain_lrelu(*args, backend=backend)
    ref = noise_adain_lrelu_reference(*(a.double() for a in args))
    assert out.dtype == torch.float32
    assert rel_l2(out, ref) < 1e-5


def test_noise_weight_may_be_4d(backend):
    args = make_inputs(weight_4d=True)
    out = so.noise_adain_lrelu(*args, backend=backend)
    assert rel_l2(out, noise_adain_lrelu_reference(*args)) < 1e-12


def test_eps_and_negative_slope_are_honoured(backend):
    args = make_inputs()
    out = so.noise_adain_lrelu(*args, eps=0.5, negative_slope=0.01, backend=backend)
    assert rel_l2(out, noise_adain_lrelu_reference(*args, eps=0.5, negative_slope=0.01)) < 1e-12


# With eps = 0 a constant plane has 0 / 0 to normalise: PyTorch's instance_norm (the seed's
# InstanceNorm2d) makes it 0, so the output is the LeakyReLU of the style bias, and so do the
# kernels, their backward and the double backward. Zeros and 3.0 sum exactly in every order.
# channels_last takes Triton's pixel-range kernels, whose variance is a difference of sums.
@pytest.mark.filterwarnings("ignore:divide by zero encountered:RuntimeWarning")  # numpy, in the Triton interpreter
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_eps_zero_normalises_a_constant_plane_to_zero(backend, memory_format):
    x, noise, weight, scale, bias = make_inputs(2, 3, 4, 5)
    x[0, 1], x[1, 2] = 3.0, 0.0
    x = x.contiguous(memory_format=memory_format)
    inputs = [x, noise, torch.zeros_like(weight), scale, bias]  # no noise, so the planes stay constant
    got, want = ([t.clone().requires_grad_() for t in inputs] for _ in range(2))
    out = so.noise_adain_lrelu(*got, eps=0.0, backend=backend)
    ref = F.instance_norm(want[0] + want[2].view(1, -1, 1, 1) * want[1], eps=0.0)
    ref = F.leaky_relu(want[3][:, :, None, None] * ref + want[4][:, :, None, None], 0.2)
    assert torch.equal(out[0, 1], F.leaky_relu(bias[0, 1], 0.2).expand(4, 5))
    grads = torch.autograd.grad(out.square().sum(), got, create_graph=True)
    grads_ref = torch.autograd.grad(ref.square().sum(), want, create_graph=True)
    second = torch.autograd.grad(sum(g.square().sum() for g in grads), got)
    second_ref = torch.autograd.grad(sum(g.square().sum() for g in grads_ref), want)
    assert rel_l2(out, ref) < 1e-12
    for g, r in zip(grads + second, grads_ref + second_ref):
        assert not g.isnan().any() and rel_l2(g, r) < 1e-10


def test_large_common_offset_keeps_its_variance(backend):
    # A naive E[x^2] - E[x]^2 in float32 loses every digit here.
    x, noise, weight, scale, bias = make_inputs(1, 2, 8, 8, dtype=torch.float32)
    x = x * 1e-2 + 1e4
    out = so.noise_adain_lrelu(x, noise, weight, scale, bias, backend=backend)
    ref = noise_adain_lrelu_reference(x.double(), noise.double(), weight.double(), scale.double(), bias.double())
    assert rel_l2(out, ref) < 1e-3


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_are_preserved(backend, layout):
    to_layout, memory_format = LAYOUTS[layout]
    args = list(make_inputs(2, 3, 6, 5))
    args[0] = to_layout(args[0])
    out = so.noise_adain_lrelu(*args, backend=backend)
    assert out.is_contiguous(memory_format=memory_format)
    assert rel_l2(out, noise_adain_lrelu_reference(*args)) < 1e-12


def test_non_contiguous_inputs(backend):
    x, noise, weight, scale, bias = make_inputs(2, 3, 6, 5)
    x_t = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, permuted strides
    noise_b = noise[:1].expand(2, -1, -1, -1)  # stride-0 batch, as the generator's const noise
    scale_t = scale.t().contiguous().t()
    out = so.noise_adain_lrelu(x_t, noise_b, weight, scale_t, bias, backend=backend)
    assert rel_l2(out, noise_adain_lrelu_reference(x, noise_b, weight, scale, bias)) < 1e-12


# float32 as well: the CPU kernel reduces the sums of up to eight float32 planes together, and a
# non-finite value must stay in its own plane. An inf in x or noise makes its plane NaN (inf - inf);
# an infinite style scale gives ±inf. Small NCHW planes, channels_last and large NCHW planes take
# different kernels (Triton's pixel ranges for the last two: their variance, a difference of sums,
# is inf - inf there, and must stay NaN rather than be clamped to 0).
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, in the Triton interpreter
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("where,value", [("x", math.nan), ("x", math.inf), ("x", -math.inf), ("noise", -math.inf),
                                         ("style_scale", math.inf)])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "large_nchw"])
def test_non_finite_inputs_propagate_as_in_eager(backend, dtype, tol, where, value, layout):
    shape = (2, 3, 65, 64) if layout == "large_nchw" else (2, 3, 5, 7)
    inputs = dict(zip(["x", "noise", "noise_weight", "style_scale", "style_bias"], make_inputs(*shape, dtype=dtype)))
    inputs[where][{"x": (0, 1, 2, 3), "noise": (0, 0, 2, 3), "style_scale": (0, 1)}[where]] = value
    if layout == "channels_last":
        inputs["x"] = inputs["x"].contiguous(memory_format=torch.channels_last)
    out = so.noise_adain_lrelu(**inputs, backend=backend)
    ref = noise_adain_lrelu_reference(*(t.double() for t in inputs.values()))
    assert torch.equal(out.isnan(), ref.isnan()) and torch.equal(out.isinf(), ref.isinf())
    assert not out[0, 1].isfinite().any() and out[1].isfinite().all()
    finite = ref.isfinite()
    assert rel_l2(out[finite], ref[finite]) < tol


GOOD = dict(zip(["x", "noise", "noise_weight", "style_scale", "style_bias"], make_inputs(dtype=torch.float32)))
BAD_INPUTS = [
    (dict(x=torch.randn(2, 3, 5)), ValueError, "x must have shape"),
    (dict(x=torch.randn(2, 3, 1, 1), noise=torch.randn(2, 1, 1, 1)), ValueError, "H\\*W > 1"),
    (dict(noise=torch.randn(2, 3, 5, 7)), ValueError, "noise must have shape"),
    (dict(noise=torch.randn(2, 1, 5, 6)), ValueError, "noise must have shape"),
    (dict(noise_weight=torch.randn(4)), ValueError, r"noise_weight must have shape \(3,\) or \(1, 3, 1, 1\)"),
    (dict(noise_weight=torch.randn(1, 3, 1, 2)), ValueError, r"noise_weight must have shape \(3,\) or \(1, 3, 1, 1\)"),
    (dict(noise_weight=torch.randn(3, 1, 1)), ValueError, r"noise_weight must have shape \(3,\) or \(1, 3, 1, 1\)"),
    (dict(noise_weight=0.5), TypeError, "noise_weight must be a torch.Tensor"),
    (dict(style_scale=torch.randn(2, 4)), ValueError, "style_scale must have shape"),
    (dict(style_bias=torch.randn(3)), ValueError, "style_bias must have shape"),
    (dict(x=torch.randint(0, 5, (2, 3, 5, 7))), TypeError, "x must be float16, bfloat16, float32 or float64"),
    (dict(style_bias=torch.randn(2, 3, dtype=torch.float64)), TypeError, "style_bias has dtype"),
    (dict(noise=torch.randn(2, 1, 5, 7, device="meta")), RuntimeError, "noise is on meta"),
]


@pytest.mark.parametrize("overrides,error,match", BAD_INPUTS)
def test_bad_input_names_the_argument(backend, overrides, error, match):
    with pytest.raises(error, match=match):
        so.noise_adain_lrelu(**{**GOOD, **overrides}, backend=backend)


@pytest.mark.parametrize("overrides,error,match", [case for case in BAD_INPUTS if all(
    isinstance(t, torch.Tensor) and not t.is_meta for t in case[0].values())])
def test_triton_library_ops_refuse_bad_input(overrides, error, match):
    """Called directly (no public function's checks before them), the Triton ops refuse bad input
    as the native ones do: a bad shape must not reach a kernel. (A non-tensor is the schema's to
    refuse, mixed devices go to the Meta kernel first: those cases are the public function's.)"""
    cpu_backend_or_skip("triton", OP)
    inputs = {**GOOD, **overrides}
    with pytest.raises(error, match=match):
        torch.ops.stylegan_ops.noise_adain_lrelu_triton(*inputs.values(), 1e-5, 0.2)
    _, mean, rstd = torch.ops.stylegan_ops.noise_adain_lrelu_triton(*GOOD.values(), 1e-5, 0.2)
    grad_y = torch.randn_like(GOOD["x"])
    with pytest.raises(ValueError, match="grad_y must have shape"):
        torch.ops.stylegan_ops.noise_adain_lrelu_triton_backward(grad_y[:, :2], *GOOD.values(), mean, rstd, 0.2, False)
    with pytest.raises(ValueError, match="rstd must be the forward's"):
        torch.ops.stylegan_ops.noise_adain_lrelu_triton_backward(grad_y, *GOOD.values(), mean, rstd.double(), 0.2,
                                                                 False)


def test_bad_scalars(backend):
    with pytest.raises(TypeError, match="eps"):
        so.noise_adain_lrelu(**GOOD, eps="small", backend=backend)
    with pytest.raises(TypeError, match="negative_slope"):
        so.noise_adain_lrelu(**GOOD, negative_slope=None, backend=backend)


# ---- gradients -----------------------------------------------------------------------------------
NAMES = ["x", "noise", "noise_weight", "style_scale", "style_bias"]
GRAD_SUBSETS = [NAMES, ["x"], ["noise"], ["noise_weight"], ["style_scale", "style_bias"], ["x", "noise_weight"]]


def _grads(fn, inputs, wrt, grad_y):
    return output_and_grads(fn, inputs, NAMES, wrt, grad_y)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4), (2, 3, 0, 4)])
def test_empty_input_matches_eager(backend, shape):
    inputs = make_inputs(*shape)
    grad_y = torch.randn(shape, dtype=torch.float64)
    y, grads = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), inputs, NAMES, grad_y)
    y_ref, grads_ref = _grads(noise_adain_lrelu_reference, inputs, NAMES, grad_y)
    assert y.shape == y_ref.shape == shape
    for got, want in zip(grads, grads_ref):
        assert torch.equal(got, want)  # zero-size, or all zeros for the per-channel inputs


@pytest.mark.parametrize("wrt", GRAD_SUBSETS, ids="+".join)
def test_gradients_float64_match_reference(backend, wrt):
    inputs = make_inputs(2, 3, 6, 5)
    grad_y = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    _, got = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), inputs, wrt, grad_y)
    _, want = _grads(noise_adain_lrelu_reference, inputs, wrt, grad_y)
    for name, g, r in zip(wrt, got, want):
        assert rel_l2(g, r) < 1e-12, name


def test_gradients_float32_match_float64_reference(backend):
    inputs = make_inputs(2, 4, 16, 16, dtype=torch.float32)
    grad_y = torch.randn(2, 4, 16, 16)
    _, got = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), inputs, NAMES, grad_y)
    _, want = _grads(noise_adain_lrelu_reference, [t.double() for t in inputs], NAMES, grad_y.double())
    for name, g, r in zip(NAMES, got, want):
        assert g.dtype == torch.float32
        assert rel_l2(g, r) < 1e-4, name


# channels_last with 36 channels: the native CPU kernel's blocks of 32 channels, a full one and a
# partial one, converted from and to the 16-bit type a row at a time.
@pytest.mark.parametrize("dtype,fwd_tol,grad_tol", [(torch.float16, 2e-3, 5e-3), (torch.bfloat16, 1e-2, 2e-2)])
@pytest.mark.parametrize("shape,memory_format", [((2, 3, 12, 12), torch.contiguous_format),
                                                 ((2, 36, 6, 6), torch.channels_last)], ids=["nchw", "nhwc"])
def test_reduced_precision_against_float32_reference(backend, dtype, fwd_tol, grad_tol, shape, memory_format):
    x, *rest = make_inputs(*shape, dtype=dtype)
    inputs = (x.contiguous(memory_format=memory_format), *rest)
    grad_y = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format)
    assert_matches_reference(lambda *a: so.noise_adain_lrelu(*a, backend=backend), noise_adain_lrelu_reference,
                             inputs, NAMES, grad_y, torch.float32, fwd_tol, grad_tol)


def test_gradients_without_noise(backend):
    x, _, weight, scale, bias = make_inputs()
    grad_y = torch.randn_like(x)
    for t in (x, weight, scale, bias):
        t.requires_grad_()
    y = so.noise_adain_lrelu(x, None, weight, scale, bias, backend=backend)
    gx, gw, gs, gb = torch.autograd.grad(y, (x, weight, scale, bias), grad_y, allow_unused=True)
    rx, rs, rb = torch.autograd.grad(noise_adain_lrelu_reference(x, None, weight, scale, bias), (x, scale, bias), grad_y)
    assert gw is None  # as in eager: noise_weight takes no part without noise
    assert rel_l2(gx, rx) < 1e-12 and rel_l2(gs, rs) < 1e-12 and rel_l2(gb, rb) < 1e-12


def test_gradients_channels_last_and_broadcast_noise(backend):
    x, noise, weight, scale, bias = make_inputs(2, 3, 6, 5)
    x = x.contiguous(memory_format=torch.channels_last)
    noise = noise[:1].expand(2, -1, -1, -1)
    grad_y = torch.randn(2, 3, 6, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    y, got = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), (x, noise, weight, scale, bias), NAMES, grad_y)
    _, want = _grads(noise_adain_lrelu_reference, (x, noise, weight, scale, bias), NAMES, grad_y)
    assert y.is_contiguous(memory_format=torch.channels_last)
    if backend != "eager":  # the fused backward writes dx in x's layout
        assert got[0].is_contiguous(memory_format=torch.channels_last)
    for name, g, r in zip(NAMES, got, want):
        assert rel_l2(g, r) < 1e-12, name


@pytest.mark.parametrize("x_format,dy_format", [(torch.channels_last, torch.contiguous_format),
                                                (torch.contiguous_format, torch.channels_last)],
                         ids=["nhwc-nchw", "nchw-nhwc"])
def test_gradients_with_dy_in_the_other_layout(backend, x_format, dy_format):
    """A dy laid out unlike x (the native CPU backward copies an NCHW dy into channels_last for a
    channels_last x, and reads a channels_last dy for an NCHW x where it lies)."""
    x, noise, weight, scale, bias = make_inputs(2, 36, 6, 5)
    x = x.contiguous(memory_format=x_format)
    grad_y = torch.randn(2, 36, 6, 5, dtype=torch.float64).contiguous(memory_format=dy_format)
    inputs = (x, noise, weight, scale, bias)
    _, got = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), inputs, NAMES, grad_y)
    _, want = _grads(noise_adain_lrelu_reference, inputs, NAMES, grad_y)
    if backend != "eager":  # the fused backward writes dx in x's layout
        assert got[0].is_contiguous(memory_format=x_format)
    for name, g, r in zip(NAMES, got, want):
        assert rel_l2(g, r) < 1e-12, name


@pytest.mark.parametrize("shape", [(2, 20, 7, 5), (1, 3, 1, 17), (2, 40, 9, 9)], ids=str)
@pytest.mark.parametrize(
    "dtype,offset,fwd_tol,grad_tol", [(torch.float64, 1e3, 1e-12, 1e-12), (torch.float32, 100.0, 1e-5, 1e-4)]
)
def test_channels_last_with_large_offset(backend, shape, dtype, offset, fwd_tol, grad_tol):
    """channels_last takes channel-major kernels in native CPU and CUDA and in Triton: several
    channel blocks (32 a block on CPU and GPU, 16 in the interpreter), partial pixel tiles, and
    a common offset that the statistics must not lose the variance to (as large as the dtype's ulp
    leaves meaningful)."""
    x, noise, weight, scale, bias = make_inputs(*shape, dtype=dtype)
    x = (x + offset).contiguous(memory_format=torch.channels_last)
    grad_y = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    y, _ = assert_matches_reference(lambda *a: so.noise_adain_lrelu(*a, backend=backend), noise_adain_lrelu_reference,
                                    (x, noise, weight, scale, bias), NAMES, grad_y, torch.float64, fwd_tol, grad_tol)
    assert y.is_contiguous(memory_format=torch.channels_last)


# Triton: planes beyond one register-resident block (MAX_SINGLE_BLOCK = 4096 pixels), and
# channels_last at any size, go over pixel ranges, several per plane when the planes are few (the
# interpreter stands in 4 SMs: up to 16 programs a plane's ranges share, ranges of 512 pixels or
# more), merged in range order. Native CPU sees large planes one by one.
@pytest.mark.parametrize("shape,channels_last,ranges", [
    ((1, 2, 72, 72), False, 8), ((3, 1, 65, 64), False, 6), ((2, 2, 64, 65), False, 4), ((1, 20, 32, 40), True, 2),
], ids=str)
@pytest.mark.parametrize("with_noise", [True, False])
def test_large_planes_in_pixel_ranges(backend, shape, channels_last, ranges, with_noise):
    if backend == "triton":  # the shapes reach what they are meant to
        from stylegan_ops.triton.noise_adain_lrelu import _range_split

        layout = torch.channels_last if channels_last else torch.contiguous_format
        assert _range_split(torch.empty(shape).contiguous(memory_format=layout))[1] == ranges
    x, noise, weight, scale, bias = make_inputs(*shape, dtype=torch.float32, noise=with_noise)
    x = x + 100.0  # a common offset, as in test_channels_last_with_large_offset
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad_y = torch.randn(shape)
    wrt = NAMES if with_noise else ["x", "style_scale", "style_bias"]
    inputs = (x, noise, weight, scale, bias)
    y, got = output_and_grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), inputs, NAMES, wrt, grad_y)
    y_ref, want = output_and_grads(noise_adain_lrelu_reference, [t if t is None else t.double() for t in inputs],
                                   NAMES, wrt, grad_y.double())
    assert rel_l2(y, y_ref) < 1e-5
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for name, g, r in zip(wrt, got, want):
        assert rel_l2(g, r) < 1e-4, name
    _, again = output_and_grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), inputs, NAMES, wrt, grad_y)
    assert all(torch.equal(a, b) for a, b in zip(got, again))  # deterministic


# A plane's first pixel far from its mean: the pixel-range statistics are sums of differences
# from that pixel, whose variance in float32 lost 4.7e-5 to 3.6e-4 of relative error here at 1000
# out (Triton, interpreter); float64 sums keep 4e-8. Triton's ranges: NCHW over 8 ranges,
# channels_last one range a plane (ONE_RANGE) and two.
@pytest.mark.parametrize("shape,channels_last", [((1, 2, 72, 72), False), ((2, 40, 24, 24), True),
                                                 ((1, 20, 32, 40), True)], ids=str)
def test_outlying_first_pixel_keeps_float32_precision(backend, shape, channels_last):
    x, noise, weight, scale, bias = make_inputs(*shape, dtype=torch.float32)
    x[:, :, 0, 0] += 1000.0
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert_matches_reference(lambda *a: so.noise_adain_lrelu(*a, backend=backend), noise_adain_lrelu_reference,
                             (x, noise, weight, scale, bias), NAMES, torch.randn(shape), torch.float64, 1e-5, 1e-4)


# A large common offset, randn + 1e4: float32 holds x to 1e-3 of its spread and y's mean rounds as
# far (in float32 eager too), so the test reads the statistics' 1 / std, which must keep float's
# precision (measured: 2.8e-7 native, 7e-8 Triton). Triton's range sums take a tile's float mean
# and the residual its rounding leaves (_range_moments); without the residual, 1 / std was 4.4e-6
# to 6.3e-5 off. Shapes as above.
@pytest.mark.parametrize("shape,channels_last", [((1, 2, 72, 72), False), ((2, 40, 24, 24), True),
                                                 ((1, 20, 32, 40), True)], ids=str)
@pytest.mark.parametrize("library_backend", ["native", "triton"])
def test_large_common_offset_keeps_rstd_to_float_precision(library_backend, shape, channels_last):
    cpu_backend_or_skip(library_backend, OP)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    assert_rstd_keeps_float_precision_at_offset(library_backend, shape, memory_format, "cpu")


def assert_rstd_keeps_float_precision_at_offset(library_backend, shape, memory_format, device):
    """x = randn + 1e4 through the backend's library op, without noise: its saved 1 / std within 1e-6
    of float64's."""
    _, _, weight, scale, bias = (t.to(device) for t in make_inputs(*shape, dtype=torch.float32))
    x = (torch.randn(shape) + 1e4).to(device).contiguous(memory_format=memory_format)
    _, _, rstd = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[library_backend])(x, None, weight, scale, bias, 1e-5, 0.2)
    rstd_ref = (x.double().flatten(2).var(-1, unbiased=False) + 1e-5).rsqrt()
    assert ((rstd.double() - rstd_ref).abs() / rstd_ref).max().item() < 1e-6


# The C++ CPU kernels' mean sums deviations from a plane's first value in float chunks: with that
# value 1e4 out of a 1024x1024 plane, the mean was off by 2.3e-5 of y's relative error (NCHW);
# corrected_moments's second pass takes it out (8e-8 measured).
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_native_cpu_mean_survives_an_outlying_first_value(memory_format):
    cpu_backend_or_skip("native", OP)
    x, noise, weight, scale, bias = make_inputs(1, 2, 1024, 1024, dtype=torch.float32)
    x[:, :, 0, 0] += 1e4
    x = x.contiguous(memory_format=memory_format)
    assert_matches_reference(lambda *a: so.noise_adain_lrelu(*a, backend="native"), noise_adain_lrelu_reference,
                             (x, noise, weight, scale, bias), NAMES, torch.randn(x.shape), torch.float64, 1e-6, 1e-4)


# Triton's range kernels take two launches a pass (partial sums, then the output), except where a
# plane is one range: one launch, the second kernel summing the plane itself (ONE_RANGE).
@pytest.mark.parametrize("shape,ranges", [((2, 40, 8, 8), 1), ((1, 20, 32, 40), 2)], ids=str)
def test_triton_planes_of_one_range_take_one_launch_a_pass(shape, ranges, monkeypatch):
    cpu_backend_or_skip("triton", OP)
    from stylegan_ops.triton import noise_adain_lrelu as kernels

    launched, launch = [], kernels._launch_ranges

    def recording(kernel, *args, **kwargs):
        launched.append(kernel)
        launch(kernel, *args, **kwargs)

    monkeypatch.setattr(kernels, "_launch_ranges", recording)
    x, noise, weight, scale, bias = make_inputs(*shape, dtype=torch.float32)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    assert kernels._range_split(x)[1] == ranges
    y = so.noise_adain_lrelu(x, noise, weight, scale, bias, backend="triton")
    (grad_x,) = torch.autograd.grad(y, x, torch.ones_like(y))
    passes = [kernels._range_forward_kernel, kernels._range_backward_kernel]
    if ranges > 1:
        passes = [kernels._range_stats_kernel, passes[0], kernels._range_grad_sums_kernel, passes[1]]
    assert launched == passes
    x_ref = x.detach().double().requires_grad_()
    y_ref = noise_adain_lrelu_reference(x_ref, *(t.double() for t in (noise, weight, scale, bias)))
    assert rel_l2(y, y_ref) < 1e-5
    assert rel_l2(grad_x, torch.autograd.grad(y_ref, x_ref, torch.ones_like(y_ref))[0]) < 1e-4


@pytest.mark.parametrize("with_noise", [True, False])
def test_gradcheck_and_gradgradcheck(backend, with_noise):
    inputs = [t if t is None else t.requires_grad_() for t in make_inputs(1, 2, 3, 4, noise=with_noise)]
    fn = lambda *a: so.noise_adain_lrelu(*a, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("with_noise", [True, False])
def test_backward_composite_matches_backward_kernel(with_noise):
    """Double backward differentiates the composite: its values must be the first derivative's."""
    cpu_backend_or_skip("native", "noise_adain_lrelu")
    x, noise, weight, scale, bias = make_inputs(2, 3, 5, 7, noise=with_noise)
    grad_y = torch.randn_like(x)
    _, mean, rstd = torch.ops.stylegan_ops.noise_adain_lrelu(x, noise, weight, scale, bias, 1e-5, 0.2)
    kernel = torch.ops.stylegan_ops.noise_adain_lrelu_backward(grad_y, x, noise, weight, scale, bias, mean, rstd, 0.2,
                                                               with_noise)
    composite = torch.ops.stylegan_ops.noise_adain_lrelu_backward_composite(grad_y, x, noise, weight, scale, bias,
                                                                            1e-5, 0.2, with_noise)
    for name, got, want in zip(NAMES, composite, kernel):
        want = want if with_noise or name != "noise_weight" else torch.zeros_like(want)
        assert got.shape == (want.shape if with_noise or name != "noise" else (0,)), name
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=lambda m: f"d {name}: {m}")


@pytest.mark.parametrize("backend_op", ["noise_adain_lrelu", "noise_adain_lrelu_triton"])
def test_backward_op_computes_grad_noise_only_when_asked(backend_op):
    """grad_noise is a reduction across channels that most calls (noise a constant) do not need:
    without compute_grad_noise it comes back empty and the other gradients are the same; asking
    for it without noise is an error."""
    cpu_backend_or_skip("native" if backend_op == "noise_adain_lrelu" else "triton", OP)
    forward = getattr(torch.ops.stylegan_ops, backend_op)
    backward = getattr(torch.ops.stylegan_ops, backend_op + "_backward")
    x, noise, weight, scale, bias = make_inputs(2, 3, 5, 7)
    grad_y = torch.randn_like(x)
    _, mean, rstd = forward(x, noise, weight, scale, bias, 1e-5, 0.2)
    asked = backward(grad_y, x, noise, weight, scale, bias, mean, rstd, 0.2, True)
    not_asked = backward(grad_y, x, noise, weight, scale, bias, mean, rstd, 0.2, False)
    assert asked[1].shape == (2, 1, 5, 7) and not_asked[1].shape == (0,)
    assert all(torch.equal(a, b) for i, (a, b) in enumerate(zip(asked, not_asked)) if i != 1)
    with pytest.raises(RuntimeError, match="compute_grad_noise needs a noise tensor"):
        backward(grad_y, x, None, weight, scale, bias, mean, rstd, 0.2, True)


# The CPU kernel sums grad_noise = Σ_c a_c dv_c over tasks of (sample, a run of at least 8
# channels, 16384 / (H*W) where that is more), then over a sample's tasks: 64x64 planes make runs
# [0, 8), [8, 16), ..., [32, 40); 8x8 planes one run of all 40 channels. channels_last goes by
# blocks of 32 channels whatever the plane size: [0, 32), [32, 40).
@pytest.mark.parametrize("shape", [(2, 40, 64, 64), (3, 40, 8, 8)], ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_native_cpu_grad_noise_over_runs_of_channels(shape, memory_format):
    cpu_backend_or_skip("native", OP)
    x, noise, weight, scale, bias = make_inputs(*shape)
    x = x.contiguous(memory_format=memory_format)
    grad_y = torch.randn(shape, dtype=torch.float64)
    _, got = _grads(lambda *a: so.noise_adain_lrelu(*a, backend="native"), (x, noise, weight, scale, bias), NAMES,
                    grad_y)
    _, want = _grads(noise_adain_lrelu_reference, (x, noise, weight, scale, bias), NAMES, grad_y)
    for name, g, r in zip(NAMES, got, want):
        assert rel_l2(g, r) < 1e-12, name


def test_backward_is_deterministic(backend):
    inputs = make_inputs(2, 3, 9, 9, dtype=torch.float32)
    grad_y = torch.randn(2, 3, 9, 9)
    first = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), inputs, NAMES, grad_y)[1]
    second = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=backend), inputs, NAMES, grad_y)[1]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


# Issue #3: backward keeps only what it needs, never the normalised tensor. Beyond the inputs, the
# fused backends save the per-plane mean and 1/std, (N, C) each in float32 (float64 for float64);
# eager saves full-size intermediates (which shows the count sees them).
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_backward_saves_only_per_plane_statistics(backend, dtype):
    inputs = [t.requires_grad_() for t in make_inputs(2, 3, 8, 8, dtype=dtype)]

    def step():
        so.noise_adain_lrelu(*inputs, backend=backend).sum().backward()

    saved = saved_bytes(step, inputs)
    if backend == "eager":
        assert saved >= inputs[0].nbytes
    else:
        assert saved == 2 * 2 * 3 * (8 if dtype == torch.float64 else 4)


# mean and rstd are outputs without gradients: autograd must not make zero tensors for them on
# every backward (the native CPU backward fills nothing at all).
def test_backward_makes_no_zero_gradients_for_the_statistics():
    cpu_backend_or_skip("native", "noise_adain_lrelu")
    inputs = [t.requires_grad_() for t in make_inputs(2, 3, 8, 8)]
    y = so.noise_adain_lrelu(*inputs, backend="native")
    grad_y = torch.randn_like(y)
    with OpCalls() as ops:
        grads = torch.autograd.grad(y, inputs[:1] + inputs[2:], grad_y)
    zero_fills = (torch.ops.aten.zeros, torch.ops.aten.zeros_like, torch.ops.aten.new_zeros, torch.ops.aten.fill_,
                  torch.ops.aten.zero_)
    assert [tuple(out.shape) for func, _, out in ops.calls if func.overloadpacket in zero_fills] == []
    _, want = _grads(noise_adain_lrelu_reference, inputs, ("x", "noise_weight", "style_scale", "style_bias"), grad_y)
    assert all(rel_l2(g, r) < 1e-12 for g, r in zip(grads, want, strict=True))


# ---- torch.library integration -------------------------------------------------------------------
LIBRARY_OPS = {"native": "noise_adain_lrelu", "triton": "noise_adain_lrelu_triton"}


# Every layout: the fake ops must predict the strides the kernels write (opcheck compares them).
@pytest.mark.parametrize("layout", LAYOUTS)
def test_opcheck(backend, layout):
    if backend == "eager":
        pytest.skip("eager is plain PyTorch, not a library op")
    op = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[backend]).default
    for with_noise in (True, False):
        x, noise, weight, scale, bias = make_inputs(2, 3, 4, 5, noise=with_noise)
        x = LAYOUTS[layout][0](x)
        args = (x.requires_grad_(), noise, weight.requires_grad_(), scale.requires_grad_(), bias, 1e-5, 0.2)
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_opcheck_backward_op(backend, layout):
    if backend == "eager":
        pytest.skip("eager is plain PyTorch, not a library op")
    forward = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[backend])
    backward = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[backend] + "_backward").default
    x, noise, weight, scale, bias = make_inputs(2, 3, 4, 5)
    x = LAYOUTS[layout][0](x)
    scale = scale.t().contiguous().t()  # transposed (N, C): the fake must not copy its strides
    _, mean, rstd = forward(x, noise, weight, scale, bias, 1e-5, 0.2)
    for compute_grad_noise in (True, False):
        torch.library.opcheck(backward, (torch.randn_like(x), x, noise, weight, scale, bias, mean, rstd, 0.2,
                                         compute_grad_noise),
                              test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # vmap's per-sample loop
def test_vmap_runs_sample_by_sample(backend):
    x, noise, weight, scale, bias = make_inputs(3, 2, 4, 5)

    def one_sample(x1, noise1, scale1, bias1):  # (C, H, W), (1, H, W), (C,), (C,)
        return so.noise_adain_lrelu(x1[None], noise1[None], weight, scale1[None], bias1[None], backend=backend)[0]

    out = torch.func.vmap(one_sample)(x, noise, scale, bias)
    assert rel_l2(out, noise_adain_lrelu_reference(x, noise, weight, scale, bias)) < 1e-12


def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    fn = torch.compile(lambda *a: so.noise_adain_lrelu(*a, backend=backend), fullgraph=True, backend="aot_eager")
    inputs = [t.requires_grad_() for t in make_inputs(2, 3, 5, 4)]
    y = fn(*inputs)
    grads = torch.autograd.grad(y.square().sum(), inputs)
    y_ref = noise_adain_lrelu_reference(*inputs)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), inputs)
    assert rel_l2(y, y_ref) < 1e-12
    for g, r in zip(grads, grads_ref):
        assert rel_l2(g, r) < 1e-12


# ---- GPU (skipped without one; run by the GPU suite) ---------------------------------------------
GPU_BACKENDS = ["native", "triton"]
GENERATOR_SHAPES = [(8, 512, 4, 4), (8, 512, 32, 32), (8, 256, 64, 64), (4, 64, 256, 256), (2, 16, 1024, 1024)]


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", GENERATOR_SHAPES, ids=str)
@pytest.mark.parametrize(
    "dtype,fwd_tol,grad_tol", [(torch.float32, 1e-5, 1e-4), (torch.float16, 2e-3, 5e-3), (torch.bfloat16, 1e-2, 2e-2)]
)
def test_gpu_against_reference(gpu_backend, shape, dtype, fwd_tol, grad_tol):
    ref_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    inputs = [t.cuda() for t in make_inputs(*shape, dtype=dtype)]
    grad_y = torch.randn(shape, device="cuda", dtype=dtype)
    assert_matches_reference(lambda *a: so.noise_adain_lrelu(*a, backend=gpu_backend), noise_adain_lrelu_reference,
                             inputs, NAMES, grad_y, ref_dtype, fwd_tol, grad_tol)


# The pixel-range kernels with a plane's first pixel 1000 out (test_outlying_first_pixel_keeps_float32_precision
# runs them on the CPU): NCHW planes too few for a block each (CUDA's PlaneMajor ranges), channels_last
# over several ranges (9 on 132 SMs) and one.
@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape,memory_format", [((2, 16, 256, 256), torch.contiguous_format),
                                                 ((8, 256, 64, 64), torch.channels_last),
                                                 ((8, 512, 8, 8), torch.channels_last)], ids=str)
def test_gpu_outlying_first_pixel_keeps_float32_precision(gpu_backend, shape, memory_format):
    inputs = [t.cuda() for t in make_inputs(*shape, dtype=torch.float32)]
    inputs[0][:, :, 0, 0] += 1000.0
    inputs[0] = inputs[0].contiguous(memory_format=memory_format)
    y = so.noise_adain_lrelu(*inputs, backend=gpu_backend)
    assert rel_l2(y, noise_adain_lrelu_reference(*[t.double() for t in inputs])) < 1e-6


# A common offset of 1e4 (test_large_common_offset_keeps_rstd_to_float_precision runs it on the CPU),
# in every statistics path that sweeps its planes: NCHW planes past 64x64 a block each (the swept
# forward: 512 planes on 132 SMs), too few for a block each (PlaneMajor ranges), channels_last over
# several ranges and one.
@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape,memory_format", [((8, 64, 128, 128), torch.contiguous_format),
                                                 ((2, 16, 256, 256), torch.contiguous_format),
                                                 ((8, 256, 64, 64), torch.channels_last),
                                                 ((8, 512, 8, 8), torch.channels_last)], ids=str)
def test_gpu_large_common_offset_keeps_rstd_to_float_precision(gpu_backend, shape, memory_format):
    assert_rstd_keeps_float_precision_at_offset(gpu_backend, shape, memory_format, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", GPU_BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gpu_layouts_and_determinism(gpu_backend, layout):
    to_layout, memory_format = LAYOUTS[layout]
    inputs = [t.cuda() for t in make_inputs(4, 64, 33, 31, dtype=torch.float32)]
    inputs[0] = to_layout(inputs[0])
    grad_y = torch.randn(4, 64, 33, 31, device="cuda")
    y, first = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=gpu_backend), inputs, NAMES, grad_y)
    _, second = _grads(lambda *a: so.noise_adain_lrelu(*a, backend=gpu_backend), inputs, NAMES, grad_y)
    assert y.is_contiguous(memory_format=memory_format)
    op = getattr(torch.ops.stylegan_ops, LIBRARY_OPS[gpu_backend]).default
    torch.library.opcheck(op, (*inputs, 1e-5, 0.2), test_utils=("test_schema", "test_faketensor"))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    y_ref = noise_adain_lrelu_reference(*[t.double() for t in inputs])
    assert rel_l2(y, y_ref) < 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", GPU_BACKENDS)
@pytest.mark.parametrize("shape", [(8, 512, 16, 16), (8, 64, 128, 128)], ids=str)  # NCHW: whole planes, pixel ranges
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gpu_calls_never_wait_for_the_gpu(gpu_backend, shape, memory_format):
    inputs = [t.cuda() for t in make_inputs(*shape, dtype=torch.bfloat16)]
    inputs[0] = inputs[0].contiguous(memory_format=memory_format)
    assert_never_waits_for_gpu(lambda *a: so.noise_adain_lrelu(*a, backend=gpu_backend), inputs,
                               torch.randn(shape, device="cuda", dtype=torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.large_gpu_memory
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_gpu_offsets_past_2_31_elements(gpu_backend, memory_format):
    """64-bit indexing: x has 9 * 4096 * 256 * 256 > 2^31 elements (bfloat16, 4.5 GiB); the last
    sample, whose offsets all lie past 2^31, against the reference on that sample alone."""
    n, c, h, w = 9, 4096, 256, 256
    x = torch.randn(n, c, h, w, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=memory_format)
    noise, weight, scale, bias = (torch.randn(*s, device="cuda", dtype=torch.bfloat16)
                                  for s in ((n, 1, h, w), (c,), (n, c), (n, c)))
    inputs = [x.requires_grad_(), noise, weight, scale.requires_grad_(), bias.requires_grad_()]
    y = so.noise_adain_lrelu(*inputs, backend=gpu_backend)
    grad_y = torch.randn_like(y)
    grad_x, grad_scale, grad_bias = torch.autograd.grad(y, (x, scale, bias), grad_y)
    last = [t.detach()[-1:].float().requires_grad_() for t in (x, noise, scale, bias)]
    y_ref = noise_adain_lrelu_reference(last[0], last[1], weight.float(), last[2], last[3])
    want = torch.autograd.grad(y_ref, (last[0], last[2], last[3]), grad_y[-1:].float())
    assert rel_l2(y[-1:], y_ref) < 1e-2
    for got, ref in zip((grad_x[-1:], grad_scale[-1:], grad_bias[-1:]), want):
        assert rel_l2(got, ref) < 2e-2
