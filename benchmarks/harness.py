"""What every op benchmark shares: the device, backend selection, and one timed step."""

import pytest
import torch

import stylegan_ops as so
from stylegan_ops.backends import unavailable_reason

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.bfloat16] if CUDA else [torch.float32]
BACKENDS = ["eager", "compile", "native", "triton"]
DIRECTIONS = ["fwd", "fwd+bwd"]


def triton_version():
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def op_function(op: str, backend: str):
    """The callable benchmarked as ``backend``: "compile" is torch.compile of the op's eager twin."""
    if backend == "compile":
        return torch.compile(getattr(so.ops, f"{op}_ref"))
    reason = unavailable_reason(backend, DEVICE, op, so.ops.IMPLEMENTED_BACKENDS[op])
    if reason is not None or (backend == "triton" and not CUDA):
        pytest.skip(reason or "the Triton interpreter is not benchmarked")
    return lambda *args: getattr(so, op)(*args, backend=backend)


def run(benchmark, fn, args, grad_inputs, direction, **extra_info):
    """Times fn(*args) (and, for "fwd+bwd", the gradient of grad_inputs) with warm-up outside the timing.

    ``extra_info`` goes into the JSON record, with the device, versions and direction added;
    a value that is a callable of the median seconds (GB/s, TFLOP/s) is evaluated on it.
    """
    training = direction == "fwd+bwd"

    def step():
        with torch.set_grad_enabled(training):
            y = fn(*args)
            if training:
                torch.autograd.grad(y, grad_inputs, torch.ones_like(y))
        if CUDA:
            torch.cuda.synchronize()

    for _ in range(3):  # compile, autotune and warm caches outside the timing
        step()
    benchmark.pedantic(step, rounds=20 if CUDA else 10, warmup_rounds=1)
    if benchmark.stats is None:  # --benchmark-disable: ran once as a smoke test, nothing to record
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        device=torch.cuda.get_device_name() if CUDA else "cpu",
        torch=torch.__version__,
        triton=triton_version(),
        direction=direction,
        **{key: value(median) if callable(value) else value for key, value in extra_info.items()},
    )
