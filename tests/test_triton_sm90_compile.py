"""Every Triton kernel launch compiles for an H100 (sm_90) within its limits, without a GPU.

tests/triton_sm90_compile.py does the work, in a fresh process: this one imported Triton with
TRITON_INTERPRET=1, so its kernels are interpreted, never compiled. Twice: the fixed configs (what
the GPU suite's tests run) in every dtype, and every autotune config in the benchmark's dtypes
(what the GPU benchmark's autotuner compiles; a config that fails to compile would end that run).
Each in as many shares (--shard) as there are cores, up to 4, run side by side: Triton compiles on
one core, and the autotune configs took 504 s in one process on a two-core machine like CI's.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cpu_backend_or_skip


def _compiling_env(*import_paths):
    """This process's environment for a child that compiles Triton kernels: without TRITON_INTERPRET
    (read when the kernels are decorated), and with ``import_paths`` (for a ``python -c`` child, the
    folders of the modules it imports) ahead of this process's sys.path."""
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    if import_paths:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, import_paths), *sys.path])
    return env


@pytest.mark.parametrize(
    "args", [[], ["--autotune", "--dtypes", "bfloat16,float32"]], ids=["fixed-configs", "autotune-configs"]
)
def test_triton_kernels_compile_for_sm90(args):
    cpu_backend_or_skip("triton", "upsample_conv2d")  # Triton installed (required in CI)
    env = _compiling_env()
    script = Path(__file__).with_name("triton_sm90_compile.py")
    shards = max(1, min(os.cpu_count() or 1, 4))
    processes = [subprocess.Popen([sys.executable, str(script), *args, "--shard", f"{shard}/{shards}"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for shard in range(shards)]
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=1800)
            print(stdout)
            assert process.returncode == 0, stdout[-6000:] + stderr[-6000:]
            assert " 0 failures" in stdout and "kernels compiled for sm_90" in stdout
    finally:  # a failed or timed-out share leaves none of the others running
        for process in processes:
            process.kill()
            process.wait()


# Launches the autotuned Triton forward once, on the compile-only driver with Triton's caches in
# the directory given, and prints the forward kernel's compiled configs, one a line.
TUNE_ONCE = """
import sys

import torch

from triton_sm90_compile import CompileOnlyDriver, activate

compile_only = activate(CompileOnlyDriver(), cache_dir=sys.argv[1])
from stylegan_ops.triton import upsample_conv2d
x = torch.empty(2, 64, 8, 8, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
upsample_conv2d.forward(x, torch.zeros(64, 64, 3, 3, dtype=torch.bfloat16), None)
for record in compile_only.compiled:
    if record.kernel == "_forward_kernel":
        print(record.constants, record.num_warps, record.num_stages)
"""


def test_a_later_process_takes_the_autotuners_choice_from_the_cache(tmp_path):
    """stylegan_ops.triton.autotune keeps the autotuner's choices in Triton's cache directory: a
    second process launching the same key compiles (and times) the chosen config only, where the
    first compiled every config (the compile-only driver's timings are all equal: the first wins)."""
    cpu_backend_or_skip("triton", "upsample_conv2d")
    from stylegan_ops.triton.upsample_conv2d import _GPU_CONFIGS

    env = _compiling_env(Path(__file__).parent) | {"STYLEGAN_OPS_TRITON_AUTOTUNE": "1"}
    compiled = []
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", TUNE_ONCE, str(tmp_path)], env=env, capture_output=True,
                                text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        compiled.append(result.stdout.splitlines())
    first, second = compiled
    assert len(first) == len(_GPU_CONFIGS)
    assert second == first[:1]


# Compiles the fixed-config float32 GEMM kernels of a forward and backward for sm_90 and prints
# each kernel's GMMA a main-loop iteration (benchmarks/triton_loop_cost.py reads them from the SASS).
FLOAT32_LOOPS = """
from triton_loop_cost import gemm_loops

for record, instructions, mma in gemm_loops((2, 64, 64, 8, 8), "float32", autotune=False):
    print(record.kernel, mma)
"""


def test_float32_gemms_run_on_the_tensor_cores():
    """float32 multiplies as 3xTF32 (stylegan_ops/triton/upsample_conv2d.py's _dot): the main loop
    of each GEMM kernel, forward, dx and d weight, issues tensor-core instructions (GMMA), where
    input_precision="ieee" left every multiply-add to a CUDA-core FFMA. The interpreter, where the
    numerical tests run, multiplies float32 exactly whatever the precision asked for; the 3xTF32
    numbers themselves are checked by the GPU tests' float32 tolerances."""
    cpu_backend_or_skip("triton", "upsample_conv2d")
    env = _compiling_env(Path(__file__).resolve().parents[1] / "benchmarks", Path(__file__).parent)
    result = subprocess.run([sys.executable, "-c", FLOAT32_LOOPS], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    mma = dict(line.split() for line in result.stdout.splitlines())
    assert sorted(mma) == ["_forward_kernel", "_grad_weight_kernel", "_grad_x_kernel"]
    assert all(int(count) > 0 for count in mma.values()), mma
