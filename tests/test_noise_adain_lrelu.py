"""noise_adain_lrelu on every backend that runs on CPU tensors, against the plain reference."""

import pytest
import torch

import stylegan_ops as so
from conftest import cpu_backend_or_skip
from reference import noise_adain_lrelu_reference, rel_l2

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


def test_forward_float32_matches_float64_reference(backend):
    args = make_inputs(2, 4, 16, 16, dtype=torch.float32)
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


def test_large_common_offset_keeps_its_variance(backend):
    # A naive E[x^2] - E[x]^2 in float32 loses every digit here.
    x, noise, weight, scale, bias = make_inputs(1, 2, 8, 8, dtype=torch.float32)
    x = x * 1e-2 + 1e4
    out = so.noise_adain_lrelu(x, noise, weight, scale, bias, backend=backend)
    ref = noise_adain_lrelu_reference(x.double(), noise.double(), weight.double(), scale.double(), bias.double())
    assert rel_l2(out, ref) < 1e-3


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_layouts_are_preserved(backend, memory_format):
    args = list(make_inputs(2, 3, 6, 5))
    args[0] = args[0].contiguous(memory_format=memory_format)
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


def test_nan_propagates(backend):
    x, noise, weight, scale, bias = make_inputs()
    x[0, 1, 2, 3] = float("nan")
    out = so.noise_adain_lrelu(x, noise, weight, scale, bias, backend=backend)
    ref = noise_adain_lrelu_reference(x, noise, weight, scale, bias)
    assert torch.equal(out.isnan(), ref.isnan()) and out.isnan()[0, 1].all()
    finite = ~ref.isnan()
    assert rel_l2(out[finite], ref[finite]) < 1e-12


GOOD = dict(zip(["x", "noise", "noise_weight", "style_scale", "style_bias"], make_inputs(dtype=torch.float32)))
BAD_INPUTS = [
    (dict(x=torch.randn(2, 3, 5)), ValueError, "x must have shape"),
    (dict(x=torch.randn(2, 3, 1, 1), noise=torch.randn(2, 1, 1, 1)), ValueError, "H\\*W > 1"),
    (dict(noise=torch.randn(2, 3, 5, 7)), ValueError, "noise must have shape"),
    (dict(noise=torch.randn(2, 1, 5, 6)), ValueError, "noise must have shape"),
    (dict(noise_weight=torch.randn(4)), ValueError, "noise_weight must have shape"),
    (dict(noise_weight=torch.randn(1, 3, 1, 2)), ValueError, "noise_weight must have shape"),
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


def test_bad_scalars(backend):
    with pytest.raises(TypeError, match="eps"):
        so.noise_adain_lrelu(**GOOD, eps="small", backend=backend)
    with pytest.raises(TypeError, match="negative_slope"):
        so.noise_adain_lrelu(**GOOD, negative_slope=None, backend=backend)
