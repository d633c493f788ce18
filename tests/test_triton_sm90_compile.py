"""Every Triton kernel launch compiles for an H100 (sm_90) within its limits, without a GPU.

tests/triton_sm90_compile.py does the work, in a fresh process: this one imported Triton with
TRITON_INTERPRET=1, so its kernels are interpreted, never compiled. Twice: the fixed configs (what
the GPU suite's tests run) in every dtype, and every autotune config in the benchmark's dtypes
(what the GPU benchmark's autotuner compiles; a config that fails to compile would end that run).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cpu_backend_or_skip


@pytest.mark.parametrize(
    "args", [[], ["--autotune", "--dtypes", "bfloat16,float32"]], ids=["fixed-configs", "autotune-configs"]
)
def test_triton_kernels_compile_for_sm90(args):
    cpu_backend_or_skip("triton", "upsample_conv2d")  # Triton installed (required in CI)
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("triton_sm90_compile.py")
    result = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True,
                            timeout=1800)
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert " 0 failures" in result.stdout and "kernels compiled for sm_90" in result.stdout
