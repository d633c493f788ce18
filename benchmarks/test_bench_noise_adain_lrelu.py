"""pytest-benchmark of noise_adain_lrelu: eager, torch.compile of the eager chain, native, Triton.

    python -m pytest benchmarks/test_bench_noise_adain_lrelu.py --benchmark-json out.json

Runs on CUDA when a GPU is visible (fp32 and bf16), else on CPU (fp32), at the shapes of
``python -m stylegan_ops.bench``. Each record carries effective GB/s in extra_info, counted
on the minimum traffic: read x and noise, write y (forward); plus read dy, write dx (backward).
"""

import pytest
import torch

from harness import BACKENDS, DEVICE, DIRECTIONS, DTYPES, op_function, run
from stylegan_ops.bench import SHAPES as SHAPES_BY_DEVICE

SHAPES = SHAPES_BY_DEVICE[(DEVICE, "noise_adain_lrelu")]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_noise_adain_lrelu(benchmark, shape, dtype, backend, direction):
    fn = op_function("noise_adain_lrelu", backend)
    n, c, h, w = shape
    make = lambda *s: torch.randn(*s, device=DEVICE, dtype=dtype, requires_grad=direction == "fwd+bwd")  # noqa: E731
    x, weight, scale, bias = make(n, c, h, w), make(c), make(n, c), make(n, c)
    noise = torch.randn(n, 1, h, w, device=DEVICE, dtype=dtype)
    x_bytes = x.numel() * x.element_size()
    moved = 2 * x_bytes + noise.numel() * noise.element_size() + (2 * x_bytes if direction == "fwd+bwd" else 0)
    run(benchmark, fn, (x, noise, weight, scale, bias), (x, weight, scale, bias), direction,
        shape=list(shape), dtype=str(dtype), backend=backend, gbps=lambda median: moved / median / 1e9)
