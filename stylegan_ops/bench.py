"""The main job: time every available backend of every op, and the whole generator, against eager.

    python -m stylegan_ops.bench --quick --json out.json --plot out.png   # (stylegan-ops-bench)

For each case (op, shape, dtype) and direction (``fwd``, ``fwd+bwd``) it runs eager, ``torch.compile``
of the eager code, native and Triton (those that can run on the device), and for the generator
``native+compile`` and ``triton+compile`` (torch.compile around the fused ops) and, on CUDA,
``eager+graph``, ``native+graph`` and ``triton+graph`` (the step captured in a CUDA graph and
replayed; peak memory is the capture's, saved bytes the un-graphed step's), checks each result
against eager (``max_rel_err``: the larger relative L2 error of the output and, for fwd+bwd,
of all gradients taken together), times it (CUDA events or wall clock after synchronisation; warm-up
first, median of the repetitions, the backends of a case timed in turns), records peak memory on
CUDA and, for fwd+bwd on every device, the bytes autograd saves for backward.

``median_ms`` is one call from an idle device: what a call costs, its CPU time included. On CUDA
``gpu_ms`` is a call's time with the CPU ahead of the GPU (calls queued behind a sleep), what the
kernels take when launches overlap; small tensors can take several times longer per call than
their kernels. ``gbps`` and ``tflops`` come from ``gpu_ms`` on CUDA, from ``median_ms`` elsewhere.

Prints progress lines as it goes, a table at the end, and writes ``--json`` / ``--plot``
(matplotlib). A backend that raises on its first call is reported as FAILED (the JSON's
``failures``), the rest are still timed, and the exit status is 1.

The default is the full set for the device, bfloat16 then float32 on CUDA and float32 on CPU;
``--quick`` is a small set that finishes in a few minutes on a 2-core CPU, ``--ops``,
``--dtypes``, ``--directions`` and ``--backends`` choose among the ops, dtypes, directions and
backends; ``--merge`` combines the JSON of several runs (the GPU suite's capped parts). The JSON also
lists the configs Triton's autotuner chose (``triton_configs``), which its timings ran. On CUDA
the upsample_conv2d cases and the generator run channels_last (the implicit GEMMs' natural
layout, and the one cuDNN's tensor-core kernels prefer), every backend alike; the
noise_adain_lrelu cases and everything on CPU run NCHW.
"""

import argparse
import copy
import datetime
import functools
import json
import os
import sys
import time
from dataclasses import dataclass, field

import torch

import stylegan_ops as so
from stylegan_ops.backends import unavailable_reason
from stylegan_ops.ops import IMPLEMENTED_BACKENDS

# native+compile, triton+compile: the whole generator under torch.compile with the fused ops inside
# it (opaque to Inductor, which fuses what lies between them, and to AOTAutograd, whose compiled
# backward calls the backward ops without the Python autograd of a Triton op); the generator only.
# eager+graph, native+graph, triton+graph: the generator's whole step (forward, and backward for
# fwd+bwd) captured once in a CUDA graph and replayed, which takes the CPU's launches out of a call
# that is otherwise CPU-bound; CUDA and the generator only.
BACKENDS = ("eager", "compile", "native", "triton", "native+compile", "triton+compile",
            "eager+graph", "native+graph", "triton+graph")
COMPILED = {"compile": "eager", "native+compile": "native", "triton+compile": "triton"}  # -> op backend inside
GRAPHED = {"eager+graph": "eager", "native+graph": "native", "triton+graph": "triton"}  # -> generator backend
WHOLE_GENERATOR = {**COMPILED, **GRAPHED}
DIRECTIONS = ("fwd", "fwd+bwd")

# Shapes per (device type, op): noise_adain_lrelu (N, C, H, W); upsample_conv2d (N, C_in, C_out, H, W)
# at the low resolution; generator (batch, resolution).
SHAPES = {
    ("cuda", "noise_adain_lrelu"): [(8, 512, 16, 16), (8, 512, 32, 32), (8, 256, 64, 64), (8, 128, 128, 128),
                                    (8, 64, 256, 256), (2, 16, 1024, 1024)],
    ("cuda", "upsample_conv2d"): [(8, 512, 512, 8, 8), (8, 512, 512, 16, 16), (8, 512, 512, 32, 32),
                                  (8, 256, 128, 64, 64)],
    ("cuda", "generator"): [(8, 256)],
    ("cpu", "noise_adain_lrelu"): [(4, 128, 64, 64), (8, 512, 8, 8), (2, 32, 128, 128)],
    ("cpu", "upsample_conv2d"): [(4, 128, 128, 32, 32), (4, 512, 512, 8, 8), (2, 64, 64, 64, 64),
                                 (4, 256, 128, 16, 16)],
    ("cpu", "generator"): [(2, 64), (4, 64)],
}
QUICK_SHAPES = {
    ("cuda", "noise_adain_lrelu"): [(8, 512, 32, 32), (8, 128, 128, 128)],
    ("cuda", "upsample_conv2d"): [(8, 512, 512, 16, 16)],
    ("cuda", "generator"): [(4, 64)],
    ("cpu", "noise_adain_lrelu"): [(8, 512, 8, 8), (2, 32, 128, 128)],
    ("cpu", "upsample_conv2d"): [(4, 256, 128, 16, 16)],
    ("cpu", "generator"): [(2, 32)],
}
OPS = ("noise_adain_lrelu", "upsample_conv2d", "generator")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Case:
    """One thing to time. ``make(backend)`` returns (fn, args, grad_indices, parameters): fwd+bwd
    differentiates fn(*args) with respect to args[grad_indices] and the parameters. Every backend's
    fn must stay itself while the others run: they are timed in turns."""

    op: str
    shape: tuple
    dtype: torch.dtype
    make: object
    metrics: dict = field(default_factory=dict)  # name -> f(median seconds, direction)


def _randn(device, dtype, *shape):
    return torch.randn(*shape, device=device, dtype=dtype)


def _op_function(op, backend, device):
    if backend == "compile":
        return torch.compile(getattr(so.ops, f"{op}_ref"))
    return lambda *args: getattr(so, op)(*args, backend=backend)


def noise_adain_lrelu_case(shape, dtype, device):
    n, c, h, w = shape
    torch.manual_seed(0)  # the same inputs in every run: errors and speeds compare across runs
    args = (_randn(device, dtype, n, c, h, w), _randn(device, dtype, n, 1, h, w), _randn(device, dtype, c),
            _randn(device, dtype, n, c), _randn(device, dtype, n, c))
    x_bytes = args[0].numel() * args[0].element_size()
    noise_bytes = args[1].numel() * args[1].element_size()

    def make(backend):
        return _op_function("noise_adain_lrelu", backend, device), args, (0, 2, 3, 4), ()

    def gbps(seconds, direction):  # minimum traffic: read x and noise, write y (+ read dy, write dx)
        return (2 * x_bytes + noise_bytes + (2 * x_bytes if direction == "fwd+bwd" else 0)) / seconds / 1e9

    return Case("noise_adain_lrelu", shape, dtype, make, {"gbps": gbps})


def upsample_conv2d_case(shape, dtype, device):
    n, c_in, c_out, h, w = shape
    torch.manual_seed(0)
    memory_format = torch.channels_last if device == "cuda" else torch.contiguous_format
    args = (_randn(device, dtype, n, c_in, h, w).contiguous(memory_format=memory_format),
            _randn(device, dtype, c_out, c_in, 3, 3), _randn(device, dtype, c_out))
    macs = n * h * w * c_in * c_out

    def make(backend):
        return _op_function("upsample_conv2d", backend, device), args, (0, 1, 2), ()

    def tflops(taps):  # forward counts taps multiply-adds per pixel and channel pair; backward twice that
        return lambda seconds, direction: 2 * taps * macs * (3 if direction == "fwd+bwd" else 1) / seconds / 1e12

    return Case("upsample_conv2d", shape, dtype, make, {"tflops": tflops(16), "tflops_36": tflops(36)})


def generator_case(shape, dtype, device):
    batch, resolution = shape
    torch.manual_seed(0)
    G = so.nn.Generator(resolution=resolution, backend="eager", channels_last=device == "cuda")
    G = G.to(device=device, dtype=dtype).eval()
    z = _randn(device, dtype, batch, G.z_dim)

    def make(backend):  # a copy per backend (same parameter values)
        model = copy.deepcopy(G)
        model.backend = WHOLE_GENERATOR.get(backend, backend)
        run_model = torch.compile(model) if backend in COMPILED else model
        # fwd+bwd is a training step: the image and the gradients of every parameter are compared.
        return (lambda z: run_model(z, noise_mode="const")), (z,), (), tuple(model.parameters())

    return Case("generator", shape, dtype, make)


CASE_BUILDERS = {"noise_adain_lrelu": noise_adain_lrelu_case, "upsample_conv2d": upsample_conv2d_case,
                 "generator": generator_case}


def _synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _time_ms(step, device):
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    step()
    return (time.perf_counter() - t0) * 1e3


@functools.cache
def _sleep_cycles_per_ms():
    """GPU clock cycles per millisecond of torch.cuda._sleep, measured once per process."""
    cycles = 10_000_000
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / start.elapsed_time(end)


def _gpu_ms(step, call_ms):
    """A call's time with the CPU ahead (CUDA): the stream sleeps for longer than the CPU needs to
    enqueue a few calls, so the events around those calls time their GPU work back to back. About
    10 ms of calls; the sleep is twice their one-call-from-idle time, doubled (up to twice more)
    whenever it ended before the CPU had queued every call, for then the GPU waited for the CPU
    (GPU clocks move, and with them a sleep's length). A call that waits for the GPU itself ends
    every sleep early: the last, larger time is then the honest one."""
    calls = max(1, min(10, int(10 / max(call_ms, 1e-3))))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for attempt in range(3):
        torch.cuda.synchronize()
        torch.cuda._sleep(int(_sleep_cycles_per_ms() * (2 * calls * call_ms + 1) * 2**attempt))
        start.record()
        for _ in range(calls):
            step()
        end.record()
        slept_through = not start.query()  # the GPU is still asleep: every call was queued in time
        end.synchronize()
        if slept_through:
            break
    return start.elapsed_time(end) / calls


def _medians_ms(steps, device, reps, warmup):
    """The median ms of each step, timed in turns (one repetition of every step, then the next) so
    that a machine whose speed drifts, like a shared VM, slows every backend alike."""
    for _ in range(warmup):
        for step in steps:
            step()
    _synchronize(device)
    times = [[] for _ in steps]
    for _ in range(reps):
        for step, step_times in zip(steps, times):
            step_times.append(_time_ms(step, device))
    return [sorted(step_times)[len(step_times) // 2] for step_times in times]


def _peak_mem_bytes(step, device):
    if device != "cuda":
        return None
    _synchronize(device)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    step()
    _synchronize(device)
    return torch.cuda.max_memory_allocated() - before


def _graphed(step):
    """``step`` captured in a CUDA graph: a callable replaying it, which returns the captured
    outputs (each replay overwrites them in place), and the bytes the capture allocated at its peak,
    which the graph's private pool keeps for its replays (a replay allocates nothing). Warm-up calls
    on a side stream come first, as capture requires: lazy initialisation, cuBLAS's workspace and
    Triton's compiles and autotuning happen outside it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = step()
    peak = torch.cuda.max_memory_allocated() - before

    def replay():
        graph.replay()
        return outputs

    return replay, peak


def saved_bytes(step, held):
    """The bytes autograd keeps for backward in one step: the distinct storages its saved tensors
    live in, other than those of ``held`` (the inputs and parameters, which exist anyway). This is
    the activation memory that fusion cuts from a training step's peak, counted alike on every
    device and backend (torch.compile's saved tensors pass the same hooks)."""
    held_storages = {t.untyped_storage().data_ptr() for t in held if t is not None}
    saved = {}  # storage address -> bytes; a saved storage stays alive, so no address is reused

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in held_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(saved.values())


def _rel_l2(out, ref):
    out, ref = out.detach().double(), ref.detach().double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def _grad_output(y):
    """The same pseudo-random dy for every backend (dy = 1 would be degenerate: the sum of an
    instance-normalised plane is constant, so its gradient is pure rounding noise), in y's memory
    format, as the layer after y would hand it back in a channels_last model."""
    generator = torch.Generator(device=y.device).manual_seed(0)
    return torch.empty_like(y).copy_(torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype))


def _step(fn, args, grad_indices, parameters, direction):
    """A callable running fn once (and its backward for fwd+bwd), returning [y, *grads]."""
    training = direction == "fwd+bwd"
    inputs = [a.detach().requires_grad_(i in grad_indices and training) for i, a in enumerate(args)]
    targets = [inputs[i] for i in grad_indices] + list(parameters)
    grad_output = []  # made on the first call, once y's shape is known

    def step():
        with torch.set_grad_enabled(training):
            y = fn(*inputs)
            if not training:
                return [y]
            if not grad_output:
                grad_output.append(_grad_output(y))
            return [y, *torch.autograd.grad(y, targets, grad_output[0])]

    return step


def _max_rel_err(outputs, reference):
    """The larger of the output's relative L2 error and that of all gradients taken as one vector
    (per tensor, a gradient that is zero in exact arithmetic, like a conv bias's in front of an
    instance norm, would report pure rounding noise as a large relative error)."""
    error = _rel_l2(outputs[0], reference[0])
    if len(outputs) > 1:
        flat = lambda tensors: torch.cat([t.detach().double().flatten() for t in tensors])  # noqa: E731
        error = max(error, _rel_l2(flat(outputs[1:]), flat(reference[1:])))
    return error


def available(op, backend, device):
    """None if ``backend`` can run ``op`` on ``device`` in a benchmark, else why not."""
    if backend in ("eager", "compile"):
        return None
    if backend in WHOLE_GENERATOR:
        if op != "generator":
            return "timed for the whole generator only"
        if backend in GRAPHED and device != "cuda":
            return "CUDA graphs need a CUDA device"
        backend = WHOLE_GENERATOR[backend]
    ops = ("noise_adain_lrelu", "upsample_conv2d") if op == "generator" else (op,)
    for name in ops:
        reason = unavailable_reason(backend, device, name, IMPLEMENTED_BACKENDS[name])
        if reason is not None:
            return reason
    if backend == "triton" and device == "cpu":
        return "the Triton interpreter is for tests, not timings"
    return None


def run(cases, device, backends=BACKENDS, directions=DIRECTIONS, reps=20, warmup=3, log=print, on_record=None):
    """Measures every case x direction x backend; returns (records, failures) for the JSON. The
    backends of one case and direction are timed in turns (``_medians_ms``), eager first as the
    reference for errors and speedups. A backend whose first call raises (a kernel that fails to
    compile or launch) is logged and listed in the failures, and the others are still measured.
    ``on_record(records, failures)`` is called after each case and direction (the CLI rewrites its
    JSON, so a run cut short keeps its data)."""
    records, failures = [], []
    groups = [(case, direction) for case in cases for direction in directions]
    for index, (case, direction) in enumerate(groups, 1):
        dtype = str(case.dtype).removeprefix("torch.")
        label = f"[{index}/{len(groups)}] {case.op} {case.shape} {dtype} {direction}"
        which = {"op": case.op, "dtype": dtype, "shape": list(case.shape), "direction": direction}
        measured = []  # (backend, step, max_rel_err, saved, peak)
        reference = None  # eager's outputs
        first_calls = []  # each backend's first call in seconds: where a capped GPU run's time goes
        for backend in backends:
            reason = available(case.op, backend, device)
            if reason is not None:
                log(f"{label} {backend}: skipped ({reason})")
                continue
            try:
                fn, args, grad_indices, parameters = case.make(backend)
                step = _step(fn, args, grad_indices, parameters, direction)
                started = time.perf_counter()
                outputs = step()  # compiles, for "compile"; autotunes, for "triton" on GPU
                _synchronize(device)
                first_calls.append(f"{backend} {time.perf_counter() - started:.1f}")
                # A graph's replay saves nothing: the tensors its capture keeps are those its step saves.
                saved = saved_bytes(step, (*args, *parameters)) if direction == "fwd+bwd" else None
                if backend in GRAPHED:
                    step, peak = _graphed(step)
                    outputs = step()
                else:
                    peak = _peak_mem_bytes(step, device)
            except Exception as error:  # noqa: BLE001 - reported, and the other backends go on
                log(f"{label} {backend}: FAILED {type(error).__name__}: {error}")
                failures.append({**which, "backend": backend, "error": f"{type(error).__name__}: {error}"})
                continue
            if backend == "eager":
                reference = outputs
            max_rel_err = _max_rel_err(outputs, reference) if reference is not None else None
            measured.append((backend, step, max_rel_err, saved, peak))
        log(f"{label}: first calls (s): {', '.join(first_calls)}")
        log(f"{label}: timing {', '.join(backend for backend, *_ in measured)} in turns, {reps} repetitions")
        medians = _medians_ms([step for _, step, *_ in measured], device, reps, warmup)
        eager_ms = next((ms for (backend, *_), ms in zip(measured, medians) if backend == "eager"), None)
        for (backend, step, max_rel_err, saved, peak), median_ms in zip(measured, medians):
            gpu_ms = _gpu_ms(step, median_ms) if device == "cuda" else None
            records.append({
                **which,
                "backend": backend,
                "median_ms": median_ms,
                "gpu_ms": gpu_ms,
                "speedup_vs_eager": eager_ms / median_ms if eager_ms else None,
                "max_rel_err": max_rel_err,
                "peak_mem_bytes": peak,
                "saved_bytes": saved,
                **{name: metric((gpu_ms or median_ms) / 1e3, direction) for name, metric in case.metrics.items()},
            })
            speedup = f"x{eager_ms / median_ms:.2f} vs eager" if eager_ms else ""
            err = f"err {max_rel_err:.1e}" if max_rel_err is not None else ""
            gpu = f" (GPU {gpu_ms:.3f} ms)" if gpu_ms is not None else ""
            log(f"{label} {backend}: {median_ms:.3f} ms{gpu} {speedup} {err}".rstrip())
        if on_record is not None:
            on_record(records, failures)
    return records, failures


def cases_for(device, ops, quick, dtypes):
    shapes = QUICK_SHAPES if quick else SHAPES
    return [CASE_BUILDERS[op](shape, dtype, device) for op in ops for dtype in dtypes for shape in shapes[(device, op)]]


def table(records):
    header = (f"{'op':<18} {'shape':<22} {'dtype':<9} {'dir':<8} {'backend':<14} {'ms':>9} {'vs eager':>9} "
              f"{'rel err':>8} {'saved MiB':>9}")
    lines = [header, "-" * len(header)]
    for r in records:
        speedup = f"{r['speedup_vs_eager']:.2f}x" if r["speedup_vs_eager"] else "-"
        err = f"{r['max_rel_err']:.1e}" if r["max_rel_err"] is not None else "-"
        saved = f"{r['saved_bytes'] / 2**20:.1f}" if r.get("saved_bytes") is not None else "-"
        lines.append(f"{r['op']:<18} {str(tuple(r['shape'])):<22} {r['dtype']:<9} {r['direction']:<8} "
                     f"{r['backend']:<14} {r['median_ms']:>9.3f} {speedup:>9} {err:>8} {saved:>9}")
    return "\n".join(lines)


def plot(records, path, title):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit(f"--plot needs matplotlib ({error}); pip install matplotlib") from error
    ops = sorted({r["op"] for r in records})
    fig, axes = plt.subplots(len(ops), 1, figsize=(12, 3.5 * len(ops)), squeeze=False)
    for ax, op in zip(axes[:, 0], ops):
        rows = [r for r in records if r["op"] == op and r["speedup_vs_eager"]]
        labels = sorted({(tuple(r["shape"]), r["dtype"], r["direction"]) for r in rows})
        backends = [b for b in BACKENDS if any(r["backend"] == b for r in rows)]
        width = 0.8 / max(1, len(backends))
        for k, backend in enumerate(backends):
            values = {(tuple(r["shape"]), r["dtype"], r["direction"]): r["speedup_vs_eager"]
                      for r in rows if r["backend"] == backend}
            ax.bar([i + k * width for i in range(len(labels))], [values.get(label, 0) for label in labels],
                   width, label=backend)
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
        ax.set_xticklabels([f"{s}\n{d} {direction}" for s, d, direction in labels], fontsize=7)
        ax.set_ylabel("speedup vs eager")
        ax.set_title(op)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_results(path, header, records, failures):
    """Writes the JSON whole or not at all (a run killed by a time cap leaves its last complete file)."""
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump({**header, "records": records, "failures": failures}, f, indent=1)
    os.replace(partial, path)


def report_failures(failures):
    """Prints the backends that failed; the exit status of a run with any."""
    for failure in failures:
        print(f"FAILED {failure['op']} {tuple(failure['shape'])} {failure['dtype']} {failure['direction']} "
              f"{failure['backend']}: {failure['error']}")
    return 1 if failures else 0


def merge(paths, json_path, plot_path):
    """One result from several --json runs on one device; a run that wrote nothing is reported and left out."""
    runs = []
    for path in paths:
        try:
            with open(path) as f:
                runs.append(json.load(f))
        except FileNotFoundError:
            print(f"--merge: {path} does not exist (its run measured nothing); left out", flush=True)
    if not runs:
        raise SystemExit("--merge: none of the given results exist")
    devices = sorted({run["device"] for run in runs})
    if len(devices) > 1:
        raise SystemExit(f"--merge: results come from different devices {devices}")
    header = {key: value for key, value in runs[0].items() if key not in ("records", "failures")}
    configs = [config for run in runs for config in run.get("triton_configs", [])]
    if configs:
        header["triton_configs"] = [config for k, config in enumerate(configs) if config not in configs[:k]]
    records, kept = [], set()
    for run in runs:  # a backend of a case that several runs timed (eager, each run's reference): the first run's
        for record in run["records"]:
            key = (record["op"], tuple(record["shape"]), record["dtype"], record["direction"], record["backend"])
            if key in kept:
                print(f"--merge: {record['backend']} {record['op']} {key[1]} {record['dtype']} {record['direction']} "
                      "was timed by an earlier run too: the earlier one kept", flush=True)
                continue
            kept.add(key)
            records.append(record)
    failures = [failure for run in runs for failure in run.get("failures", [])]
    if json_path:
        write_results(json_path, header, records, failures)
    print(table(records))
    if plot_path:
        plot(records, plot_path, f"stylegan_ops on {header['device']} (torch {header['torch']})")
    return report_failures(failures)


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="stylegan-ops-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small set (minutes on a 2-core CPU)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    parser.add_argument("--dtypes", default=None,
                        help=f"comma-separated subset of {','.join(DTYPES)} (default bfloat16,float32 on GPU, "
                             "bfloat16 first: the dtype of the GPU goals; float32 on CPU)")
    parser.add_argument("--directions", default=",".join(DIRECTIONS),
                        help=f"comma-separated subset of {','.join(DIRECTIONS)}")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated subset of {','.join(BACKENDS)} (eager is the reference of errors "
                             "and speedups: a run without it reports neither)")
    parser.add_argument("--reps", type=_positive_int, default=None,
                        help="timed repetitions (default 20 on GPU, 10 on CPU)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of the speedups over eager")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="measure nothing: combine earlier --json results of one device into --json/--plot "
                             "(the GPU suite times each op under its own cap)")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json, args.plot)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    unknown = sorted(set(ops) - set(OPS))
    if unknown:
        raise SystemExit(f"--ops: unknown {unknown}; choose from {OPS}")
    directions = [direction.strip() for direction in args.directions.split(",") if direction.strip()]
    if not directions or set(directions) - set(DIRECTIONS):
        raise SystemExit(f"--directions: got {args.directions!r}; choose from {DIRECTIONS}")
    chosen = {backend.strip() for backend in args.backends.split(",") if backend.strip()}
    if not chosen or chosen - set(BACKENDS):
        raise SystemExit(f"--backends: got {args.backends!r}; choose from {BACKENDS}")
    backends = [backend for backend in BACKENDS if backend in chosen]
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if args.dtypes is None:
        dtypes = [torch.bfloat16, torch.float32] if device == "cuda" else [torch.float32]
    else:
        names = [name.strip() for name in args.dtypes.split(",") if name.strip()]
        unknown = sorted(set(names) - set(DTYPES))
        if unknown or not names:
            raise SystemExit(f"--dtypes: unknown {unknown or names}; choose from {DTYPES}")
        dtypes = [DTYPES[name] for name in names]
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"stylegan_ops.bench on {device_name}: torch {torch.__version__}, build {so.build_info()}", flush=True)

    try:
        import triton

        from stylegan_ops.triton import autotune_on_gpu, chosen_configs

        triton_version, triton_autotune = triton.__version__, device == "cuda" and autotune_on_gpu()
    except ImportError:
        triton_version, triton_autotune, chosen_configs = None, False, list
    header = {
        "device": device_name,
        "torch": torch.__version__,
        "triton": triton_version,
        "triton_autotune": triton_autotune,
        "cuda": torch.version.cuda,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "build": so.build_info(),
    }

    def write_json(records, failures):
        if args.json:  # with the configs Triton's autotuner has chosen so far: what its timings ran
            write_results(args.json, {**header, "triton_configs": chosen_configs()}, records, failures)

    started = time.perf_counter()
    reps = args.reps if args.reps is not None else (20 if device == "cuda" else 10)
    records, failures = run(cases_for(device, ops, args.quick, dtypes), device, backends=backends,
                            directions=directions, reps=reps, log=lambda line: print(line, flush=True),
                            on_record=write_json)
    write_json(records, failures)
    print(table(records))
    print(f"done in {time.perf_counter() - started:.0f} s")
    if args.plot:
        plot(records, args.plot, f"stylegan_ops on {device_name} (torch {torch.__version__})")
    return report_failures(failures)


if __name__ == "__main__":
    sys.exit(main())
