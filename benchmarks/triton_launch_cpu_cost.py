"""The CPU time of the Triton launchers, without a GPU: each op's launcher (grid arithmetic,
allocations, autotuner, Triton's JIT dispatch), and the library ops around them (the dispatcher,
the argument checks, autograd's recording), run against the compile-only sm_90 driver of
tests/triton_sm90_compile.py, whose launch runs nothing. On the H100 runs a Triton call took far
longer than its kernels (0.115 of 1.15 ms for noise_adain_lrelu forward+backward); this measures
the part of that which is Python, on whatever CPU runs it. Tensors are CPU tensors: glibc is told
to keep large blocks on its heap (as PyTorch's CUDA caching allocator keeps its blocks), since
otherwise every output is a fresh mmap whose cost (30 us a call here, and in bursts) drowns what
is measured.

    python benchmarks/triton_launch_cpu_cost.py [--fixed-configs] [--against-register-autograd]

TRITON_INTERPRET must be unset. To compare two versions, run it with each on PYTHONPATH (this VM's
speed swings up to 2x between processes: alternate the runs, or compare in one process, as
--against-register-autograd does: noise_adain_lrelu's Triton op forward+backward through its
autograd kernel, in turns with the kernel ``torch.library.register_autograd`` would make of the
same formula, called directly, a dispatch fewer; stylegan_ops/ops/_library.py says why ours).
"""

import argparse
import ctypes
import ctypes.util
import os
import statistics
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
    parser.add_argument("--against-register-autograd", action="store_true",
                        help="also time the op's autograd kernel against register_autograd's, in turns")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: interpreted kernels take another path")
    os.environ["STYLEGAN_OPS_TRITON_AUTOTUNE"] = "0" if args.fixed_configs else "1"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import triton
    from triton_sm90_compile import CompileOnlyDriver, activate

    _keep_large_blocks_on_the_heap()
    activate(CompileOnlyDriver())
    from stylegan_ops.triton import noise_adain_lrelu as noise
    from stylegan_ops.triton import upsample_conv2d as upsample

    torch.set_num_threads(1)
    bf16 = torch.bfloat16
    # The profiled H100 shapes (benchmarks/profile_kernels.py), bf16; channels_last for upsample_conv2d.
    x = torch.empty(8, 512, 32, 32, dtype=bf16).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.zeros(512, 512, 3, 3, dtype=bf16), torch.zeros(512, dtype=bf16)
    grad_y = torch.empty_like(upsample.forward(x, weight, bias))
    # The gradients' weight laid out as _grad_x's taps (k, l, c, o), so that their permuted copy is
    # a view here: on a GPU that copy is one more kernel, on these CPU tensors 2 ms of copying.
    taps_weight = torch.zeros(3, 3, 512, 512, dtype=bf16).permute(3, 2, 0, 1)
    xn, noise_map = torch.empty(8, 128, 128, 128, dtype=bf16), torch.empty(8, 1, 128, 128, dtype=bf16)
    a, scale, shift = torch.empty(128, dtype=bf16), torch.empty(8, 128, dtype=bf16), torch.empty(8, 128, dtype=bf16)
    y, mean, rstd = noise.forward(xn, noise_map, a, scale, shift, 1e-5, 0.2)
    print(f"Triton {triton.__version__}, {'fixed configs' if args.fixed_configs else 'autotuned'}; "
          "microseconds per launcher call (no kernel runs):")
    cases = {
        "upsample_conv2d forward (fold, forward)": lambda: upsample.forward(x, weight, bias),
        "upsample_conv2d backward (dy's window means A and d bias, dx, d weight, d weight's split sum)":
            lambda: (window_means := upsample._window_means(grad_y, True)[0],
                     upsample._grad_x(window_means, x, taps_weight),
                     upsample._grad_weight(window_means, x, taps_weight)),
        "noise_adain_lrelu forward (2 pixel-range kernels)": lambda: noise.forward(xn, noise_map, a, scale, shift,
                                                                                    1e-5, 0.2),
        "noise_adain_lrelu backward (2 pixel-range kernels, a sum)":
            lambda: noise.backward(y, xn, noise_map, a, scale, shift, mean, rstd, 0.2, False),
    }
    ops = torch.ops.stylegan_ops
    x_grad, xn_grad = x.detach().requires_grad_(), xn.detach().requires_grad_()
    cases |= {
        "library op upsample_conv2d_triton, no grad": lambda: no_grad(ops.upsample_conv2d_triton, x, weight, bias),
        "library op upsample_conv2d_triton, x requires grad": lambda: ops.upsample_conv2d_triton(x_grad, weight, bias),
        "library op noise_adain_lrelu_triton, no grad":
            lambda: no_grad(ops.noise_adain_lrelu_triton, xn, noise_map, a, scale, shift, 1e-5, 0.2),
        "library op noise_adain_lrelu_triton, x requires grad":
            lambda: ops.noise_adain_lrelu_triton(xn_grad, noise_map, a, scale, shift, 1e-5, 0.2),
        "library op noise_adain_lrelu_triton_backward":
            lambda: ops.noise_adain_lrelu_triton_backward(y, xn, noise_map, a, scale, shift, mean, rstd, 0.2, False),
        "library op noise_adain_lrelu_triton, forward and backward through autograd":
            lambda: torch.autograd.grad(ops.noise_adain_lrelu_triton(xn_grad, noise_map, a, scale, shift, 1e-5, 0.2)[0],
                                        xn_grad, y),
    }
    for label, call in cases.items():
        print(f"  {label}: {best_us(call):.1f}")
    if args.against_register_autograd:
        _against_register_autograd(xn_grad, noise_map, a, scale, shift, y)


def _against_register_autograd(x, noise, noise_weight, scale, shift, grad_y):
    from torch._library.autograd import Info, make_autograd_impl

    module = sys.modules["stylegan_ops.ops.noise_adain_lrelu"]
    op = torch.ops.stylegan_ops.noise_adain_lrelu_triton
    backward = module._autograd_backward(torch.ops.stylegan_ops.noise_adain_lrelu_triton_backward)
    generated = make_autograd_impl(op.default, Info(backward, module._setup_context))
    keys = torch._C.DispatchKey
    keyset = torch._C.DispatchKeySet(keys.CPU) | torch._C.DispatchKeySet(keys.AutogradCPU)
    args = (x, noise, noise_weight, scale, shift, 1e-5, 0.2)
    steps = {"ours (through the op)": lambda: torch.autograd.grad(op(*args)[0], x, grad_y),
             "register_autograd's (called directly)":
                 lambda: torch.autograd.grad(generated(keyset, *args)[0], x, grad_y)}
    times = {label: [] for label in steps}
    for _ in range(15):
        for label, step in steps.items():
            times[label].append(best_us(step, calls=30, rounds=2))
    print("noise_adain_lrelu_triton forward and backward, autograd kernels in turns (15 rounds):")
    for label, values in times.items():
        print(f"  {label}: min {min(values):.1f}, median {statistics.median(values):.1f}")


def _keep_large_blocks_on_the_heap():
    """glibc's mallopt: no mmap below 1 GiB and no trimming of the heap's top below 1 GiB free
    (M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1), so that a freed output's block serves the next
    call's."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not (libc.mallopt(-3, 1 << 30) and libc.mallopt(-1, 1 << 30)):
        raise RuntimeError("mallopt refused the thresholds")


def no_grad(op, *args):
    with torch.no_grad():
        return op(*args)


if __name__ == "__main__":
    main()
