"""Where a fused op's time goes on a GPU: its kernels' time (torch.profiler) against the time of a
call (one call from an idle GPU, as the benchmark CLI times it), per backend, forward+backward,
and the Python functions that take a call's CPU time (cProfile, by own time).

The first H200 run showed both gaps this separates: noise_adain_lrelu's kernels took a fifth of
its call time (the rest is per-call CPU cost), upsample_conv2d's kernels all of it.

    python benchmarks/profile_kernels.py   (CUDA only; about 20 s with STYLEGAN_OPS_TRITON_AUTOTUNE=0,
    which the GPU suite sets)
"""

import cProfile
import io
import pstats
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import stylegan_ops as so
from stylegan_ops.bench import _medians_ms

CASES = {
    "noise_adain_lrelu (8, 128, 128, 128)": lambda: _noise_inputs(8, 128, 128, 128),
    "upsample_conv2d (8, 512, 512, 32, 32)": lambda: _upsample_inputs(8, 512, 512, 32, 32),
}


def _randn(*shape, grad=True, channels_last=False):
    t = torch.randn(*shape, device="cuda", dtype=torch.bfloat16)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(grad)


def _noise_inputs(n, c, h, w):
    args = (_randn(n, c, h, w), _randn(n, 1, h, w, grad=False), _randn(c), _randn(n, c), _randn(n, c))
    return so.noise_adain_lrelu, args


def _upsample_inputs(n, c_in, c_out, h, w):
    return so.upsample_conv2d, (_randn(n, c_in, h, w, channels_last=True), _randn(c_out, c_in, 3, 3))


def profile_case(name, make, backend):
    op, args = make()
    grad_y = torch.randn_like(op(*args, backend=backend))
    inputs = [a for a in args if a.requires_grad]

    def step():
        torch.autograd.grad(op(*args, backend=backend), inputs, grad_y)

    call_ms = _medians_ms([step], "cuda", reps=20, warmup=3)[0]  # the CLI's measure, warm-up included
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]  # kernels, copies
    kernel_ms = sum(e.self_device_time_total for e in events) / 5 / 1e3
    print(f"== {name} {backend} fwd+bwd: call {call_ms:.3f} ms, kernels {kernel_ms:.3f} ms")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:8]:
        print(f"   {e.self_device_time_total / 5 / 1e3:8.3f} ms  x{e.count // 5:<3} {e.key[:100]}")
    cpu = cProfile.Profile()
    cpu.enable()
    for _ in range(20):
        step()
    cpu.disable()
    torch.cuda.synchronize()
    report = io.StringIO()
    pstats.Stats(cpu, stream=report).sort_stats("tottime").print_stats(8)
    print("   CPU time of 20 calls, by function (cProfile):")
    print("\n".join("   " + line for line in report.getvalue().splitlines() if line.strip()))


def main():
    if not torch.cuda.is_available():
        sys.exit("profile_kernels.py needs a CUDA device")
    for name, make in CASES.items():
        for backend in ("eager", "native", "triton"):
            profile_case(name, make, backend)


if __name__ == "__main__":
    main()
