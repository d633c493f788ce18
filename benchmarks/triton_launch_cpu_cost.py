"""The CPU time of the Triton launchers, without a GPU: each op's launcher (grid arithmetic,
allocations, autotuner, Triton's JIT dispatch) run against the compile-only sm_90 driver of
tests/triton_sm90_compile.py, whose launch runs nothing. On the H100 runs a Triton call took far
longer than its kernels (0.115 of 1.15 ms for noise_adain_lrelu forward+backward); this measures
the part of that which is Python, on whatever CPU runs it. Tensors are CPU tensors, so the
allocations cost what host memory does, not what PyTorch's CUDA caching allocator does.

    python benchmarks/triton_launch_cpu_cost.py [--fixed-configs]

TRITON_INTERPRET must be unset. To compare two versions, run it with each on PYTHONPATH.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch


def best_us(call, calls=300, rounds=5):
    """The fastest of ``rounds`` averages over ``calls`` calls, in microseconds (the VM is noisy)."""
    for _ in range(20):
        call()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixed-configs", action="store_true", help="STYLEGAN_OPS_TRITON_AUTOTUNE=0")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: interpreted kernels take another path")
    os.environ["STYLEGAN_OPS_TRITON_AUTOTUNE"] = "0" if args.fixed_configs else "1"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import triton
    from triton.runtime import driver
    from triton_sm90_compile import CompileOnlyDriver

    driver.set_active(CompileOnlyDriver(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin",
                                                     "cuobjdump")))
    from stylegan_ops.triton import noise_adain_lrelu as noise
    from stylegan_ops.triton import upsample_conv2d as upsample

    torch.set_num_threads(1)
    bf16 = torch.bfloat16
    # The profiled H100 shapes (benchmarks/profile_kernels.py), bf16; channels_last for upsample_conv2d.
    x = torch.empty(8, 512, 32, 32, dtype=bf16).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.zeros(512, 512, 3, 3, dtype=bf16), torch.zeros(512, dtype=bf16)
    grad_y = torch.empty_like(upsample.forward(x, weight, bias))
    xn, noise_map = torch.empty(8, 128, 128, 128, dtype=bf16), torch.empty(8, 1, 128, 128, dtype=bf16)
    a, scale, shift = torch.empty(128, dtype=bf16), torch.empty(8, 128, dtype=bf16), torch.empty(8, 128, dtype=bf16)
    y, mean, rstd = noise.forward(xn, noise_map, a, scale, shift, 1e-5, 0.2)
    print(f"Triton {triton.__version__}, {'fixed configs' if args.fixed_configs else 'autotuned'}; "
          "microseconds per launcher call (no kernel runs):")
    cases = {
        "upsample_conv2d forward (fold, forward)": lambda: upsample.forward(x, weight, bias),
        "upsample_conv2d dx and d weight (fold, dx, d weight, unfold)":
            lambda: (upsample._grad_x(grad_y, x, weight), upsample._grad_weight(grad_y, x, weight)),
        "noise_adain_lrelu forward (2 pixel-range kernels)": lambda: noise.forward(xn, noise_map, a, scale, shift,
                                                                                    1e-5, 0.2),
        "noise_adain_lrelu backward (2 pixel-range kernels, 2 sums)":
            lambda: noise.backward(y, xn, noise_map, a, scale, shift, mean, rstd, 0.2),
    }
    for label, call in cases.items():
        print(f"  {label}: {best_us(call):.1f}")


if __name__ == "__main__":
    main()
