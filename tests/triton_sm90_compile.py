"""Compile every Triton kernel launch of stylegan_ops for an H100 (sm_90), without a GPU.

Triton's interpreter, where the CPU tests run the Triton kernels, executes their Python semantics
but never compiles them. An error only Triton's compiler or ptxas finds, a config that needs more
shared memory than an H100 has, or one with more registers per block than it can launch would first
show on a lent GPU. Here the Triton launchers run on CPU tensors with Triton's active driver
replaced by one that compiles for sm_90 (ttir, ttgir, llir, ptx, then a cubin from Triton's own
ptxas), reads each cubin's registers and local memory with Triton's cuobjdump, checks them and the
shared memory against the H100's limits, and launches nothing. With ``--autotune`` the autotuner
compiles every config it would try on the GPU; without it, the one fixed config per launch that
``STYLEGAN_OPS_TRITON_AUTOTUNE=0`` runs. Each launch runs twice: the second must compile nothing
(with ``--autotune``, it launches the autotuner's choice without the autotuner).

    python tests/triton_sm90_compile.py [--autotune] [--dtypes float32,bfloat16] [--shard K/N] [--verbose]

``--shard K/N`` compiles the K-th of N shares of the launches (every N-th of them in order, dtypes
one after another), so that N processes side by side share the work: Triton compiles on one core.

TRITON_INTERPRET must be unset (Triton reads it when the kernels are decorated). Exits 1 if any
launch fails to compile or breaks a limit. tests/test_triton_sm90_compile.py runs it.
"""

import argparse
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import torch

from sass_report import cuobjdump_path

# H100 SXM (sm_90) limits a launch is checked against, as the CUDA driver reports them.
MAX_SHARED_BYTES = 232448  # dynamic shared memory per block with the opt-in Triton uses (227 KiB)
REGISTERS_PER_SM = 65536
MAX_THREADS_PER_BLOCK = 1024
REGISTER_ALLOCATION_UNIT = 256  # registers are allocated per warp in units of 256


def max_threads_per_block(registers: int) -> int:
    """What the CUDA driver lets a kernel of this many registers per thread launch."""
    per_warp = max(1, -(-registers * 32 // REGISTER_ALLOCATION_UNIT)) * REGISTER_ALLOCATION_UNIT
    return min(MAX_THREADS_PER_BLOCK, REGISTERS_PER_SM // per_warp * 32)


@dataclass
class Compiled:
    dtype: str  # of the launch's tensors
    kernel: str
    constants: str
    num_warps: int
    num_stages: int
    shared_bytes: int
    registers: int = 0  # read when the kernel is "loaded"; 0 if it broke the shared memory limit first
    local_bytes: int = 0  # spill stores and stack: 0 when everything stays in registers


class CompileOnlyDriver:
    """The part of Triton's driver interface that compiling and launching use, for an sm_90 target
    and no device: kernels compile, their launches record what was compiled and run nothing."""

    def __init__(self):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", 90, 32)
        self.cuobjdump = cuobjdump_path()  # reads the compiled kernels' registers and local memory
        if self.cuobjdump is None:
            raise RuntimeError("needs Triton's cuobjdump (backends/nvidia/bin in the triton package)")
        self.compiled: list[Compiled] = []
        self.dtype = ""  # of the launches being compiled, for the report
        self.utils = self  # Triton calls driver.utils.load_binary and driver.utils.get_device_properties

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_benchmarker(self):
        def bench(kernel_call, quantiles=None, **_):
            kernel_call()  # compiles this config; a failure propagates to the autotuner, as on a GPU
            return [1.0, 1.0, 1.0] if quantiles else 1.0

        return bench

    def get_device_properties(self, device):
        return {"max_shared_mem": MAX_SHARED_BYTES, "multiprocessor_count": 132, "max_num_regs": REGISTERS_PER_SM,
                "warpSize": 32, "sm_clock_rate": 1980000, "mem_clock_rate": 2619000, "mem_bus_width": 5120}

    def launcher_cls(self, src, metadata):
        names = src.fn.arg_names
        constants = ", ".join(f"{names[key[0]]}={value}" for key, value in sorted(src.constants.items())
                              if isinstance(value, (bool, int, str)) or hasattr(value, "name"))
        self.compiled.append(
            Compiled(self.dtype, src.name, constants, metadata.num_warps, metadata.num_stages, metadata.shared)
        )
        return lambda *args, **kwargs: None

    def load_binary(self, name, cubin, shared, device):
        registers, local_bytes = self._resource_usage(cubin)
        record = self.compiled[-1]
        record.registers, record.local_bytes = registers, local_bytes
        # module, function, n_regs, n_spills, n_max_threads (Triton raises OutOfResources past the last)
        return 1, 1, registers, local_bytes, max_threads_per_block(registers)

    def _resource_usage(self, cubin: bytes):
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin)
            f.flush()
            out = subprocess.run([self.cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True,
                                 check=True).stdout
        usage = dict(re.findall(r"(REG|STACK|LOCAL):(\d+)", out))
        return int(usage["REG"]), int(usage.get("STACK", 0)) + int(usage.get("LOCAL", 0))


def activate(compile_only, cache_dir=None):
    """Makes ``compile_only`` (a CompileOnlyDriver) Triton's active driver, with Triton's caches in
    ``cache_dir``, else in a fresh temporary directory removed at exit. The autotuners keep their
    choices in that cache (stylegan_ops.triton.autotune): a choice found there would skip the
    compiles of the other configs, and this driver's stand-in timings must never reach the cache of
    a machine with a GPU of the same architecture."""
    from triton.runtime import driver

    if cache_dir is None:
        cache_dir = tempfile.mkdtemp(prefix="triton_sm90_compile_")
        atexit.register(shutil.rmtree, cache_dir, ignore_errors=True)
    os.environ["TRITON_CACHE_DIR"] = cache_dir  # read by Triton at each use
    driver.set_active(compile_only)
    return compile_only


def launches(dtype):
    """(label, call) for every kernel family, layout and specialisation the ops launch."""
    from stylegan_ops.triton import noise_adain_lrelu as noise_kernels
    from stylegan_ops.triton import upsample_conv2d as upsample_kernels

    def noise_case(n, c, h, w, channels_last, with_noise):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.empty(n, c, h, w, dtype=dtype).contiguous(memory_format=fmt)
        noise = torch.empty(n, 1, h, w, dtype=dtype) if with_noise else None
        a, s, b = torch.empty(c, dtype=dtype), torch.empty(n, c, dtype=dtype), torch.empty(n, c, dtype=dtype)

        def call():
            y, mean, rstd = noise_kernels.forward(x, noise, a, s, b, 1e-5, 0.2)
            noise_kernels.backward(torch.empty_like(y), x, noise, a, s, b, mean, rstd, 0.2, with_noise)

        layout = "channels_last" if channels_last else "NCHW"
        return f"noise_adain_lrelu {layout} ({n}, {c}, {h}, {w}) noise={with_noise}", call

    def upsample_case(n, c_in, c_out, h, w, channels_last, with_bias):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.empty(n, c_in, h, w, dtype=dtype).contiguous(memory_format=fmt)
        weight = torch.zeros(c_out, c_in, 3, 3, dtype=dtype)
        bias = torch.empty(c_out, dtype=dtype) if with_bias else None

        def call():
            y = upsample_kernels.forward(x, weight, bias)
            upsample_kernels.backward(torch.empty_like(y), x, weight, [True, True, True])

        layout = "channels_last" if channels_last else "NCHW"
        return f"upsample_conv2d {layout} ({n}, {c_in}, {c_out}, {h}, {w}) bias={with_bias}", call

    # Planes of the generator, 4x4 to 1024x1024, as the launchers bucket them: one register-resident
    # block per power of two up to noise_kernels.MAX_SINGLE_BLOCK, then pixel ranges, several per
    # plane and one (S = 1, which Triton may specialise); an odd size (no divisibility
    # specialisation); one sample of one channel (N = C = 1, constants to Triton); channels_last
    # tiles, again in one range and in several.
    cases = [noise_case(2, 4, s, s, False, True) for s in (4, 8, 16, 32, 64, 128)]
    cases += [noise_case(64, 4, 128, 128, False, True), noise_case(2, 4, 5, 7, False, True),
              noise_case(2, 4, 8, 8, False, False), noise_case(1, 1, 256, 256, False, True)]
    cases += [noise_case(2, 48, s, s, True, with_noise) for s in (8, 64) for with_noise in (True, False)]
    # Split-K d weight needs N*H*W >= 2048; odd channel counts and sizes take the masked edges; an
    # argument of 1 (one sample, one channel each side) is a constant to Triton, a plain int in the
    # kernel, not a tensor.
    cases += [upsample_case(2, 32, 48, 32, 32, channels_last, True) for channels_last in (False, True)]
    cases += [upsample_case(1, 5, 7, 3, 5, False, False), upsample_case(1, 1, 1, 3, 5, False, False)]
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--autotune", action="store_true", help="compile every autotune config, not the fixed one")
    parser.add_argument("--dtypes", default="float32,float16,bfloat16,float64")
    parser.add_argument("--shard", default="0/1", help="K/N: only the K-th of N shares of the launches (0 <= K < N)")
    parser.add_argument("--verbose", action="store_true", help="print every compiled kernel")
    args = parser.parse_args(argv)
    shard, shards = (int(part) for part in args.shard.split("/"))
    if not 0 <= shard < shards:
        parser.error(f"--shard {args.shard}: want K/N with 0 <= K < N")
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: interpreted kernels are never compiled")
    os.environ["STYLEGAN_OPS_TRITON_AUTOTUNE"] = "1" if args.autotune else "0"

    import triton

    compile_only = activate(CompileOnlyDriver())
    print(f"Triton {triton.__version__}: compiling for {compile_only.target} "
          f"({'every autotune config' if args.autotune else 'fixed configs'})", flush=True)

    failures = []
    start = time.perf_counter()
    every_launch = [(dtype_name, label, call) for dtype_name in args.dtypes.split(",")
                    for label, call in launches(getattr(torch, dtype_name))]
    for dtype_name, label, call in every_launch[shard::shards]:
        compile_only.dtype = dtype_name
        before = len(compile_only.compiled)
        try:
            call()
            # Again: the launchers then skip the autotuner (stylegan_ops.triton.launch_autotuned) and
            # must hit a kernel it compiled, with its config; a recompile means they launched another.
            again = len(compile_only.compiled)
            call()
            if len(compile_only.compiled) != again:
                failures.append(f"{dtype_name} {label}: a second launch compiled "
                                f"{len(compile_only.compiled) - again} more kernels")
        except Exception as e:  # noqa: BLE001: a failed compile is this script's finding
            failures.append(f"{dtype_name} {label}: {type(e).__name__}: {e}")
        print(f"  {dtype_name:8} {label}: {len(compile_only.compiled) - before} compiled "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    # Launches inside the autotuner that break a limit are dropped there (as on a GPU), not raised: check all.
    for record in compile_only.compiled:
        name = (f"{record.dtype} {record.kernel} [{record.constants}] "
                f"warps={record.num_warps} stages={record.num_stages}")
        if record.shared_bytes > MAX_SHARED_BYTES:
            failures.append(f"{name}: {record.shared_bytes} B shared memory > {MAX_SHARED_BYTES}")
        elif not record.registers:
            failures.append(f"{name}: compiled but never loaded, so its registers went unchecked")
        elif record.num_warps * 32 > max_threads_per_block(record.registers):
            failures.append(f"{name}: {record.registers} registers per thread are too many for {record.num_warps} warps")
        if args.verbose or record.local_bytes:
            print(f"{name}: {record.registers} registers, {record.local_bytes} B local (spills), "
                  f"{record.shared_bytes} B shared")
    if not compile_only.compiled:  # this Triton no longer reaches the driver the way this script expects
        failures.append("no kernel reached CompileOnlyDriver.launcher_cls")
    spilling = sum(1 for record in compile_only.compiled if record.local_bytes)
    print(f"{len(compile_only.compiled)} kernels compiled for sm_90 in {time.perf_counter() - start:.0f} s; "
          f"{spilling} of them spill registers to local memory; {len(failures)} failures")
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
