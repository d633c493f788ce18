"""upsample_conv2d per memory format: NCHW against channels_last, native, Triton and eager, bf16.

A quick look the benchmark CLI does not give (it times channels_last only): the mean time of 30
back-to-back calls between two CUDA events, after 3 warm-up calls, forward and forward+backward
(gradients of x and the weight; dy in x's memory format). Back-to-back, so a call whose CPU cost
exceeds its GPU time is timed by its CPU cost. Needs a CUDA GPU; about 80 s on an H100 (Triton
autotunes each new shape).

    python benchmarks/layout_timing.py
"""
import torch
import torch.nn.functional as F

import stylegan_ops as so

SHAPES = [(8, 512, 512, 32, 32), (8, 512, 512, 8, 8), (8, 256, 128, 128, 128)]  # N, C_in, C_out, H, W


def mean_ms(fn, calls=30):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / calls


def main():
    for n, c_in, c_out, h, w in SHAPES:
        for memory_format in (torch.contiguous_format, torch.channels_last):
            randn = lambda *size: torch.randn(*size, device="cuda", dtype=torch.bfloat16)
            x = randn(n, c_in, h, w).to(memory_format=memory_format).requires_grad_()
            weight = randn(c_out, c_in, 3, 3).requires_grad_()
            dy = randn(n, c_out, 2 * h, 2 * w).to(memory_format=memory_format)
            times = {}
            for backend in ("native", "triton", "eager"):
                if backend == "eager":
                    fn = lambda: F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)
                else:
                    fn = lambda backend=backend: so.upsample_conv2d(x, weight, backend=backend)
                times[backend] = (round(mean_ms(fn), 3),
                                  round(mean_ms(lambda: torch.autograd.grad(fn(), (x, weight), dy)), 3))
            layout = "CL" if memory_format == torch.channels_last else "NCHW"
            print((n, c_in, c_out, h, w), layout, "fwd,fwd+bwd ms", times, flush=True)


if __name__ == "__main__":
    main()
