"""pytest-benchmark of noise_adain_lrelu: eager, torch.compile of the eager chain, native, Triton.

    python -m pytest benchmarks/test_bench_noise_adain_lrelu.py --benchmark-json out.json

Runs on CUDA when a GPU is visible (generator shapes, fp32 and bf16), else on CPU (the
issue's CPU goal shapes, fp32). Each record carries effective GB/s in extra_info, counted
on the minimum traffic: read x and noise, write y (forward); plus read dy, write dx (backward).
"""

import pytest
import torch

import stylegan_ops as so
from stylegan_ops.backends import unavailable_reason
from stylegan_ops.ops import noise_adain_lrelu_ref

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
SHAPES = (
    [(8, 512, 16, 16), (8, 512, 32, 32), (8, 256, 64, 64), (8, 128, 128, 128), (8, 64, 256, 256), (2, 16, 1024, 1024)]
    if CUDA
    else [(4, 128, 64, 64), (8, 512, 8, 8), (2, 32, 128, 128)]
)
DTYPES = [torch.float32, torch.bfloat16] if CUDA else [torch.float32]
BACKENDS = ["eager", "compile", "native", "triton"]


def _triton_version():
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def _inputs(shape, dtype, requires_grad):
    n, c, h, w = shape
    make = lambda *s: torch.randn(*s, device=DEVICE, dtype=dtype, requires_grad=requires_grad)  # noqa: E731
    return make(n, c, h, w), torch.randn(n, 1, h, w, device=DEVICE, dtype=dtype), make(c), make(n, c), make(n, c)


def _function(backend):
    if backend == "compile":
        return torch.compile(noise_adain_lrelu_ref)
    reason = unavailable_reason(backend, DEVICE, "noise_adain_lrelu")
    if reason is not None or (backend == "triton" and not CUDA):
        pytest.skip(reason or "the Triton interpreter is not benchmarked")
    return lambda *args: so.noise_adain_lrelu(*args, backend=backend)


@pytest.mark.parametrize("direction", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_noise_adain_lrelu(benchmark, shape, dtype, backend, direction):
    fn = _function(backend)
    training = direction == "fwd+bwd"
    x, noise, weight, scale, bias = _inputs(shape, dtype, training)
    grad_y = torch.randn_like(x)

    def step():
        with torch.set_grad_enabled(training):
            y = fn(x, noise, weight, scale, bias)
            if training:
                torch.autograd.grad(y, (x, weight, scale, bias), grad_y)
        if CUDA:
            torch.cuda.synchronize()

    for _ in range(3):  # compile, autotune and warm caches outside the timing
        step()
    benchmark.pedantic(step, rounds=20 if CUDA else 10, warmup_rounds=1)
    x_bytes = x.numel() * x.element_size()
    moved = 2 * x_bytes + noise.numel() * noise.element_size()
    if training:
        moved += 2 * x_bytes
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if CUDA else "cpu",
        torch=torch.__version__,
        triton=_triton_version(),
        shape=list(shape),
        dtype=str(dtype),
        backend=backend,
        direction=direction,
        gbps=moved / benchmark.stats.stats.median / 1e9,
    )
