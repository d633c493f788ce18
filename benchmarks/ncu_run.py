"""One forward+backward of one case, for Nsight Compute (`benchmarks/gpu_suite.sh`: its first call
profiles the noise_native_128 cases, its `ncu` mode every case).

The case runs twice: once to compile and warm up, then once between torch.cuda.profiler.start()
and stop(), so that `ncu --profile-from-start off` reports only that call's kernels. The cases
are those where the GPU runs left the questions open: the CUDA phase convolutions at 32x32 ran about
3x slower than cuDNN on 4x the work (is it the 16 weight slabs each block streams from L2 per stage,
since spread over 4 pixel tiles instead of one in the forward, shared-memory bandwidth, or the
tensor pipes idling?), with cuDNN's kernels for the same call beside them, and at 8x8, where the
grid splits its source channels over blocks; the noise_adain_lrelu kernels at 128x128 planes (67%
and 69% of the copy ceiling on the H100 run), NCHW (per-plane kernels) and channels_last (the
channel-major pixel-range kernels of the generator, about half the copy ceiling in its training
step on the H200 run of 2026-11-28: bytes in flight, or something else?).

    python benchmarks/ncu_run.py CASE     (CUDA only; CASE one of the names in CASES)
    python benchmarks/ncu_run.py --list   (the case names, a line each)
"""

import sys

import torch

from profile_kernels import _noise_inputs, _upsample_inputs

CASES = {
    "upsample_native_32": (lambda: _upsample_inputs(8, 512, 512, 32, 32), "native"),
    "upsample_eager_32": (lambda: _upsample_inputs(8, 512, 512, 32, 32), "eager"),
    "upsample_native_8": (lambda: _upsample_inputs(8, 512, 512, 8, 8), "native"),
    "noise_native_128": (lambda: _noise_inputs(8, 128, 128, 128), "native"),
    "noise_native_128_nhwc": (lambda: _noise_inputs(8, 128, 128, 128, channels_last=True), "native"),
}


def main(name):
    if not torch.cuda.is_available():
        sys.exit("ncu_run.py needs a CUDA device")
    make, backend = CASES[name]
    op, args = make()
    inputs = [a for a in args if a.requires_grad]
    grad_y = torch.randn_like(op(*args, backend=backend))

    def step():
        torch.autograd.grad(op(*args, backend=backend), inputs, grad_y)

    step()
    torch.cuda.synchronize()
    torch.cuda.profiler.start()
    step()
    torch.cuda.synchronize()
    torch.cuda.profiler.stop()
    print(f"ncu_run {name}: {op.__name__} {backend} forward+backward profiled", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        print("\n".join(CASES))
        sys.exit()
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        sys.exit(f"usage: python benchmarks/ncu_run.py {{{','.join(CASES)}}}")
    main(sys.argv[1])
