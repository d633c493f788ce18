"""Where a fused op's time goes on a GPU: its kernels' time (torch.profiler) against the time of a
call (one call from an idle GPU, as the benchmark CLI times it), per backend, forward+backward;
the CPU side of a call: the operators and CUDA runtime/driver calls with the most CPU time (any
synchronising call named), the Python functions by own time (cProfile), a forward call's CPU
cost layer by layer (public function, registered op, Triton launcher), a forward+backward's split
where autograd comes in, and the autograd engine's cost for one Python or C++ node on CUDA and on
the CPU; the same tables for native upsample_conv2d at the generator's 8x8 level, for the
benchmark's generator forward on eager and native and for its native training step, and last for
every backend's float32 upsample_conv2d at 32x32.

The GPU runs showed the gaps this separates: noise_adain_lrelu's kernels take a tenth to a fifth
of its call time, the Triton backend's a tenth of its forward+backward (0.115 of 1.15 ms on an
H100); upsample_conv2d's CUDA kernels all of its call.

    python benchmarks/profile_kernels.py   (CUDA only; about 50 s with STYLEGAN_OPS_TRITON_AUTOTUNE=0,
    which the GPU suite sets)
"""

import cProfile
import importlib
import io
import pstats
import statistics
import sys
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import stylegan_ops as so
from stylegan_ops.bench import _medians_ms, _sleep_cycles_per_ms, _step

CASES = {
    "noise_adain_lrelu (8, 128, 128, 128)": lambda: _noise_inputs(8, 128, 128, 128),
    "upsample_conv2d (8, 512, 512, 32, 32)": lambda: _upsample_inputs(8, 512, 512, 32, 32),
}


def _randn(*shape, grad=True, channels_last=False, dtype=torch.bfloat16):
    t = torch.randn(*shape, device="cuda", dtype=dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(grad)


def _noise_inputs(n, c, h, w, channels_last=False):
    args = (_randn(n, c, h, w, channels_last=channels_last), _randn(n, 1, h, w, grad=False), _randn(c), _randn(n, c),
            _randn(n, c))
    return so.noise_adain_lrelu, args


def _upsample_inputs(n, c_in, c_out, h, w, dtype=torch.bfloat16):
    return so.upsample_conv2d, (_randn(n, c_in, h, w, channels_last=True, dtype=dtype),
                                _randn(c_out, c_in, 3, 3, dtype=dtype))


def profile_case(name, make, backend):
    """An op's forward+backward on ``backend``."""
    op, args = make()
    grad_y = torch.randn_like(op(*args, backend=backend))
    inputs = [a for a in args if a.requires_grad]

    def step():
        torch.autograd.grad(op(*args, backend=backend), inputs, grad_y)

    profile_step(f"{name} {backend} fwd+bwd", step)


def profile_generator(backend, direction, batch=8, resolution=256):
    """The benchmark's generator (bf16, channels_last, const noise) on ``backend``, forward or its
    training step (``fwd+bwd``: the gradients of every parameter, the CLI's step): on the
    H100 run at 217f692 the native forward took 6.1 ms a call against 1.9 ms of kernels, the
    native training step 13.9 ms against 6.6 ms of GPU work."""
    torch.manual_seed(0)
    model = so.nn.Generator(resolution=resolution, backend=backend, channels_last=True)
    model = model.to(device="cuda", dtype=torch.bfloat16).eval()
    z = torch.randn(batch, model.z_dim, device="cuda", dtype=torch.bfloat16)
    step = _step(lambda z: model(z, noise_mode="const"), (z,), (), tuple(model.parameters()), direction)
    profile_step(f"generator ({batch}, {resolution}) {backend} {direction}", step, calls=3)


def profile_step(label, step, calls=5):
    """One call's time (as the benchmark CLI measures it) against its kernels' time, the CPU time by
    operator and CUDA runtime call (torch.profiler), any call that waits for the GPU, and the
    Python functions by own time (cProfile)."""
    call_ms = _medians_ms([step], "cuda", reps=20, warmup=3)[0]  # the CLI's measure, warm-up included
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            step()
        torch.cuda.synchronize()
    averages = prof.key_averages()
    # Kernels, copies and fills: device events only. Operators carry their kernels' time as their
    # own device time too (torch 2.11 on the 2026-11-27 H100 run, whose "kernels" totals count
    # each kernel twice, under its operator and itself).
    events = [e for e in averages if e.device_type == DeviceType.CUDA and e.self_device_time_total > 0]
    kernel_ms = sum(e.self_device_time_total for e in events) / calls / 1e3
    print(f"== {label}: call {call_ms:.3f} ms, kernels {kernel_ms:.3f} ms")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:8]:
        print(f"   {e.self_device_time_total / calls / 1e3:8.3f} ms  x{e.count // calls:<3} {e.key[:100]}")
    print("   CPU time per call by operator and runtime call (torch.profiler, self time):")
    host = [e for e in averages if e.self_cpu_time_total > 0]
    for e in sorted(host, key=lambda e: -e.self_cpu_time_total)[:10]:
        print(f"   {e.self_cpu_time_total / calls / 1e3:8.3f} ms  x{e.count // calls:<3} {e.key[:100]}")
    waits = [f"{e.key} x{e.count}" for e in host if _waits_for_gpu(e.key)]
    print(f"   calls that wait for the GPU, in {calls} calls and the loop's one torch.cuda.synchronize(): "
          f"{', '.join(waits)}")
    cpu = cProfile.Profile()
    cpu.enable()
    for _ in range(4 * calls):
        step()
    cpu.disable()
    torch.cuda.synchronize()
    report = io.StringIO()
    pstats.Stats(cpu, stream=report).sort_stats("tottime").print_stats(12)
    print(f"   CPU time of {4 * calls} calls, by function (cProfile):")
    print("\n".join("   " + line for line in report.getvalue().splitlines() if line.strip()))


def _waits_for_gpu(name):
    """Whether a CUDA runtime or driver call blocks the CPU until the GPU catches up."""
    return "Synchronize" in name or name in ("cudaMemcpy", "cuMemcpyDtoH_v2", "cuMemcpyHtoD_v2")


def _host_us(call, calls=50, reps=5):
    """CPU microseconds of one call queued behind a GPU sleep of about 20 ms (the median of ``reps``
    loops of ``calls`` calls): a call that synchronises waits out the sleep and shows as
    thousands of microseconds."""
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        torch.cuda._sleep(int(_sleep_cycles_per_ms() * 20))
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(times)


def layer_costs(name, make):
    """A forward call's CPU cost (no autograd) through each layer down to the Triton launcher: the
    difference between two lines is that layer's own cost."""
    op, args = make()
    plain = [a.detach() for a in args]
    with torch.no_grad():
        _print_host_costs(_layers(op, plain))


def _print_host_costs(calls):
    """A line per labelled call: its CPU microseconds (_host_us) after a first call (Triton compiles,
    autotunes) and one discarded measurement: the 2026-11-27 H100 run's first line, the native
    public function, took 72 us against 24 us for the registered op under it, where
    call_cpu_cost.py gives that wrapper about 9 us of CPU; a cold start, most likely."""
    for label, call in calls.items():
        call()
        _host_us(call)
        print(f"   {_host_us(call):8.1f} µs  {label}")


# What the registered ops take after the public function's tensors: its defaults.
OP_DEFAULTS = {"noise_adain_lrelu": (1e-5, 0.2), "upsample_conv2d": (None,)}
# The backward ops' arguments after (grad_y, *the forward's tensors), from the registered forward op's
# outputs: what the autograd kernels pass them when x and weight (upsample_conv2d) or all but the
# noise (noise_adain_lrelu) require grad, as in profile_case.
BACKWARD_ARGS = {
    "noise_adain_lrelu": lambda outputs: (*outputs[1:], 0.2, False),  # (y, mean, rstd) -> mean, rstd; no d noise
    "upsample_conv2d": lambda y: ([True, True, False],),  # d x, d weight; no bias
}


def _layers(op, args):
    """The calls of one forward, from the public function down to the Triton launcher."""
    name = op.__name__
    launcher = importlib.import_module(f"stylegan_ops.triton.{name}").forward
    full = (*args, *OP_DEFAULTS[name])
    native_op, triton_op = getattr(torch.ops.stylegan_ops, name), getattr(torch.ops.stylegan_ops, f"{name}_triton")
    return {
        f"native: so.{name}": lambda: op(*args, backend="native"),
        f"native: torch.ops.stylegan_ops.{name}": lambda: native_op(*full),
        f"triton: so.{name}": lambda: op(*args, backend="triton"),
        f"triton: torch.ops.stylegan_ops.{name}_triton": lambda: triton_op(*full),
        f"triton: stylegan_ops.triton.{name}.forward (launcher)": lambda: launcher(*full),
    }


def backward_layer_costs(name, make):
    """A forward+backward's CPU cost split where autograd comes in, per fused backend: the whole
    step; the forward recording autograd's graph; the backward alone through autograd (a graph
    kept with retain_graph); the backward op called directly, and for Triton its launcher. The
    H200 run of 2026-11-28 had Triton's noise_adain_lrelu forward+backward at 0.967 ms a call for a
    forward of 118 us CPU, where on a CPU with the compile-only driver of tests/triton_sm90_compile.py
    the backward op takes about 150 us (benchmarks/triton_launch_cpu_cost.py): these lines say
    which layer holds the rest on a GPU host."""
    op, args = make()
    inputs = [a for a in args if a.requires_grad]
    plain = [a.detach() for a in args]
    for backend in ("native", "triton"):
        y = op(*args, backend=backend)
        grad_y = torch.randn_like(y)
        suffix = "_triton" if backend == "triton" else ""
        forward_op = getattr(torch.ops.stylegan_ops, f"{name}{suffix}")
        backward_op = getattr(torch.ops.stylegan_ops, f"{name}{suffix}_backward")
        with torch.no_grad():
            outputs = forward_op(*plain, *OP_DEFAULTS[name])
        backward_args = (grad_y, *plain, *BACKWARD_ARGS[name](outputs))
        layers = {
            "forward+backward: autograd.grad(so.op(...))":
                lambda: torch.autograd.grad(op(*args, backend=backend), inputs, grad_y),
            "forward recording the graph: so.op(...)": lambda: op(*args, backend=backend),
            "backward through autograd: autograd.grad(y, retain_graph=True)":
                lambda: torch.autograd.grad(y, inputs, grad_y, retain_graph=True),
            f"backward op: torch.ops.stylegan_ops.{name}{suffix}_backward": lambda: backward_op(*backward_args),
        }
        if backend == "triton":
            launcher = importlib.import_module(f"stylegan_ops.triton.{name}").backward
            layers[f"backward launcher: stylegan_ops.triton.{name}.backward"] = lambda: launcher(*backward_args)
        _print_host_costs({f"{backend}: {layer}": call for layer, call in layers.items()})


class _PassThrough(torch.autograd.Function):
    """y = x with a backward in Python: an autograd node whose backward needs the GIL."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def autograd_engine_costs():
    """The autograd engine's own cost for a one-node graph, a Python node (an autograd.Function, as
    the Triton ops' backward) against a C++ one (clone's), on a CUDA tensor (the engine runs its
    backward on the device's worker thread, which takes the GIL for a Python node) against a CPU
    tensor (run on the calling thread)."""
    for device in ("cuda", "cpu"):
        x = torch.ones(8, device=device, requires_grad=True)
        grad = torch.ones(8, device=device)
        _print_host_costs({f"{device}: {kind}": lambda forward=forward: torch.autograd.grad(forward(x), x, grad)
                           for kind, forward in (("Python autograd.Function", _PassThrough.apply),
                                                 ("C++ node (clone)", torch.clone))})


def main():
    if not torch.cuda.is_available():
        sys.exit("profile_kernels.py needs a CUDA device")
    # Layer costs first: a few seconds, and what the H100 run's capped profile never reached while
    # its cProfile tables put 0.65 ms of self time a call in torch.library's backend_impl, the
    # frame custom_op put around each Triton op's Python kernel (the Triton ops have been
    # torch.library.define + impl since, without that frame).
    for name, make in CASES.items():
        print(f"== {name}: CPU cost of one forward call, layer by layer (GPU kept busy)")
        layer_costs(name, make)
        print(f"== {name}: CPU cost of one forward+backward, layer by layer (GPU kept busy)")
        backward_layer_costs(name, make)
    print("== the autograd engine: CPU cost of autograd.grad through one node (GPU kept busy)")
    autograd_engine_costs()
    for name, make in CASES.items():
        for backend in ("eager", "native", "triton"):
            profile_case(name, make, backend)
    # The generator's 8x8 level, where native forward+backward took more GPU time than eager's on
    # the H200 run of 2026-11-28 (0.168 against 0.127 ms; 32x32 above has the kernels' breakdown):
    # which of its kernels (the forward's split-K partials and their sum?). Native only: a second.
    profile_case("upsample_conv2d (8, 512, 512, 8, 8)", lambda: _upsample_inputs(8, 512, 512, 8, 8), "native")
    # The generator: the slowest part; the native training step, which #6's goal is measured on,
    # after the forwards.
    for backend, direction in (("eager", "fwd"), ("native", "fwd"), ("native", "fwd+bwd")):
        profile_generator(backend, direction)
    # Last, the first a time cap would cut (Triton compiles its float32 kernels on its first call):
    # float32 at 32x32, exact against exact as the benchmark compares them (cuDNN without TF32),
    # whose part of the bench times whole calls only; the native forward, dx and d weight have
    # multiplied as 3xTF32 on the tensor cores since the 2026-11-28 run.
    torch.backends.cudnn.allow_tf32 = False
    for backend in ("eager", "native", "triton"):
        profile_case("upsample_conv2d (8, 512, 512, 32, 32) float32",
                     lambda: _upsample_inputs(8, 512, 512, 32, 32, dtype=torch.float32), backend)


if __name__ == "__main__":
    main()
