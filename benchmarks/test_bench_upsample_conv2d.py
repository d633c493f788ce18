"""pytest-benchmark of upsample_conv2d: eager (upsample + conv), torch.compile of it, the naive
four-conv2d phase composite, native, Triton.

    python -m pytest benchmarks/test_bench_upsample_conv2d.py --benchmark-json out.json

Shapes of ``python -m stylegan_ops.bench``; channels_last, fp32 and bf16 on GPU; NCHW fp32 on CPU.
TFLOP/s are counted both on the 16-tap phase algorithm (tflops_16) and on the 36-tap
upsample-then-conv one (tflops_36); backward counts twice the forward's multiply-adds.
"""

import pytest
import torch
import torch.nn.functional as F

from harness import BACKENDS, CUDA, DEVICE, DIRECTIONS, DTYPES, op_function, run
from stylegan_ops.bench import SHAPES as SHAPES_BY_DEVICE
from stylegan_ops.ops.upsample_conv2d import fold_weight

# (N, C_in, C_out, H, W) at the low resolution.
SHAPES = SHAPES_BY_DEVICE[(DEVICE, "upsample_conv2d")]


def four_conv_composite(x, weight, bias):
    """The naive phase decomposition: four conv2d calls on a padded x, interleaved afterwards."""
    n, _, h, w = x.shape
    folded = fold_weight(weight)
    padded = F.pad(x, (1, 1, 1, 1))
    y = x.new_empty(n, weight.shape[0], 2 * h, 2 * w)
    for a in range(2):
        for b in range(2):
            y[:, :, a::2, b::2] = F.conv2d(padded[:, :, a : a + h + 1, b : b + w + 1], folded[a, b], bias)
    return y


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("backend", BACKENDS + ["four_conv"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_upsample_conv2d(benchmark, shape, dtype, backend, direction):
    fn = four_conv_composite if backend == "four_conv" else op_function("upsample_conv2d", backend)
    n, c_in, c_out, h, w = shape
    make = lambda *s: torch.randn(*s, device=DEVICE, dtype=dtype, requires_grad=direction == "fwd+bwd")  # noqa: E731
    memory_format = torch.channels_last if CUDA else torch.contiguous_format
    x = make(n, c_in, h, w).detach().contiguous(memory_format=memory_format).requires_grad_(direction == "fwd+bwd")
    weight, bias = make(c_out, c_in, 3, 3), make(c_out)
    passes = 3 if direction == "fwd+bwd" else 1
    macs = n * h * w * c_in * c_out * passes
    run(benchmark, fn, (x, weight, bias), (x, weight, bias), direction,
        shape=list(shape), dtype=str(dtype), backend=backend, memory_format=str(memory_format),
        tflops_16=lambda median: 2 * 16 * macs / median / 1e12, tflops_36=lambda median: 2 * 36 * macs / median / 1e12)
