"""A small run of every CUDA kernel, for compute-sanitizer (memcheck, racecheck).

Each op runs on native (the hand-written kernels), then on Triton: every dtype, both layouts,
forward and backward. noise_adain_lrelu's shapes take the native kernels through NCHW
register-cached planes by 16-byte vectors and by elements (35-element planes), swept planes (400 of
them: a block each), split planes (2 of them: pixel ranges) and the channel-major channels_last
kernels, with noise (requiring grad: its gradient's kernel runs too) and without, and the Triton
kernels through register-resident planes and pixel ranges (one per plane at 65x64, several at 80x80,
channels_last at every size); upsample_conv2d's (the phase-conv and grad-weight kernels) has partial
pixel tiles and a partial second block of 64 channels on both sides, with channels staged element by
element (70 and 66 channels) and, channels_last, through cp.async in 16-byte vectors (72 and 80), at
33x40 with several pixel tiles per d weight block (its double buffering alternates, as the phase
convolutions' stages do at every size here)."""

import sys

import torch

import stylegan_ops as so

BACKENDS = ("native", "triton")


def noise_adain_lrelu_run(backend):
    for shape in [(2, 3, 5, 7), (2, 4, 8, 8), (4, 100, 65, 64), (1, 2, 80, 80)]:
        for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            for with_noise in (True, False):
                for memory_format in (torch.contiguous_format, torch.channels_last):
                    n, c, h, w = shape
                    x = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=memory_format)
                    noise = torch.randn(n, 1, h, w, device="cuda", dtype=dtype) if with_noise else None
                    params = [torch.randn(*s, device="cuda", dtype=dtype) for s in ((c,), (n, c), (n, c))]
                    inputs = [t.requires_grad_() for t in (x, noise, *params) if t is not None]
                    y = so.noise_adain_lrelu(x, noise, *params, backend=backend)
                    torch.autograd.grad(y, inputs, torch.randn_like(y), allow_unused=True)


def upsample_conv2d_run(backend):
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        for (n, c_in, c_out, h, w), memory_format in [((2, 70, 66, 9, 11), torch.contiguous_format),
                                                      ((2, 70, 66, 9, 11), torch.channels_last),
                                                      ((2, 72, 80, 9, 11), torch.channels_last),
                                                      ((2, 72, 80, 33, 40), torch.channels_last)]:
            x = torch.randn(n, c_in, h, w, device="cuda", dtype=dtype).contiguous(memory_format=memory_format)
            weight = torch.randn(c_out, c_in, 3, 3, device="cuda", dtype=dtype)
            bias = torch.randn(c_out, device="cuda", dtype=dtype)
            inputs = [t.requires_grad_() for t in (x, weight, bias)]
            y = so.upsample_conv2d(*inputs, backend=backend)
            torch.autograd.grad(y, inputs, torch.randn_like(y))


def main(backends):
    # The hand-written CUDA kernels first, upsample_conv2d's (shared-memory tiles, cp.async double
    # buffering) before noise_adain_lrelu's: the suite's racecheck cap ended its H100 run of
    # 2026-11-27 inside the noise kernels. A line per part, so that a run cut short by the cap
    # shows how far it got.
    for backend in backends:
        for run in (upsample_conv2d_run, noise_adain_lrelu_run):
            run(backend)
            torch.cuda.synchronize()
            print(f"{run.__name__.removesuffix('_run')} {backend}: every kernel launched", flush=True)
    print(f"sanitizer run: every {' and '.join(backends)} kernel launched")


if __name__ == "__main__":
    # Optional arguments name the backends to run (default: both), e.g. `sanitizer_run.py native`.
    chosen = tuple(sys.argv[1:]) or BACKENDS
    if any(b not in BACKENDS for b in chosen):
        sys.exit(f"usage: sanitizer_run.py [{' '.join(BACKENDS)}]")
    main(chosen)
