"""pytest-benchmark of noise_adain_lrelu: eager, torch.compile of the eager chain, native, Triton.

    python -m pytest benchmarks/test_bench_noise_adain_lrelu.py --benchmark-json out.json

Runs on CUDA when a GPU is visible (generator shapes, fp32 and bf16), else on CPU (the
issue's CPU goal shapes, fp32). Each record carries effective GB/s in extra_info, counted
on the minimum traffic: read x and noise, write y (forward); plus read dy, write dx (backward).
"""

import pytest
import torch

from harness import BACKENDS, CUDA, DEVICE, DIRECTIONS, DTYPES, op_function, run

SHAPES = (
    [(8, 512, 16, 16), (8, 512, 32, 32), (8, 256, 64, 64), (8, 128, 128, 128), (8, 64, 256, 256), (2, 16, 1024, 1024)]
    if CUDA
    else [(4, 128, 64, 64), (8, 512, 8, 8), (2, 32, 128, 128)]
)


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
