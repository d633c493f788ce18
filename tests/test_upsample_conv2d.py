"""upsample_conv2d on every backend that runs on CPU tensors, against the plain reference."""

import pytest
import torch

import stylegan_ops as so
from conftest import cpu_backend_or_skip
from reference import rel_l2, upsample_conv2d_reference

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
]


@pytest.mark.parametrize("overrides,error,match", BAD_INPUTS)
def test_bad_input_names_the_argument(backend, overrides, error, match):
    with pytest.raises(error, match=match):
        so.upsample_conv2d(**{**GOOD, **overrides}, backend=backend)
