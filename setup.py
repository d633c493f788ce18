"""Builds the one extension, ``stylegan_ops._C``, from ``csrc/``.

C++ CPU kernels are always built. CUDA kernels are built when the installed torch is a
CUDA build and nvcc is found under ``CUDA_HOME``; a visible GPU is *not* required, so
CI machines without one still compile and link every kernel.

Environment:
  STYLEGAN_OPS_CUDA      "1" forces the CUDA kernels (error if impossible), "0" skips
                         them, unset decides automatically.
  TORCH_CUDA_ARCH_LIST   target architectures; defaults to "9.0" (Hopper) when no GPU
                         is visible to pick it from.
  MAX_JOBS               parallel compile jobs (ninja).
"""

import glob
import importlib.util
import os
import platform
import re

import setuptools
import torch
from setuptools import setup
from torch.utils import cpp_extension

CSRC = "csrc"
# The oldest torch the project is tested with (README's quick start). Older ones fail when the
# package is imported (torch 2.6: torch.library.infer_schema refuses list[bool] annotations, and
# torch._C._any_requires_grad does not exist), so the build refuses them up front.
MIN_TORCH = (2, 11)
# setuptools builds wheels (pip's editable ones too) itself from 70.1; an older one needs the `wheel`
# package. With --no-build-isolation pip installs no build requirements: in a fresh Python 3.11 venv
# (setuptools 65.5, no wheel; torch 2.11 accepts that) pip failed with "invalid command 'bdist_wheel'".
SETUPTOOLS_WITH_BDIST_WHEEL = (70, 1)
# PEP 639's license expression (the License-Expression field) from setuptools 77, which deprecates
# pyproject's older `license = { text = ... }` table, and whose releases after 2027-02-18 refuse it;
# setuptools before 77 takes no expression, only the older License field: pyproject.toml leaves the
# license to this file, which gives each the form it takes.
SETUPTOOLS_WITH_LICENSE_EXPRESSION = (77, 0)


def _major_minor(version):
    return tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", version).groups())


def _check_build_requirements():
    """Refuses, with what to install, the builds that would fail later and less clearly."""
    installed_note = "(the build uses the installed one: --no-build-isolation)"
    if _major_minor(torch.__version__) < MIN_TORCH:
        raise SystemExit(f"stylegan_ops needs torch >= {'.'.join(map(str, MIN_TORCH))}, found {torch.__version__}: "
                         f"install a newer torch first {installed_note}")
    if _major_minor(setuptools.__version__) < SETUPTOOLS_WITH_BDIST_WHEEL and importlib.util.find_spec("wheel") is None:
        raise SystemExit(f"stylegan_ops needs setuptools >= {'.'.join(map(str, SETUPTOOLS_WITH_BDIST_WHEEL))} (or the "
                         f"wheel package) to build a wheel, as pip install does; found setuptools {setuptools.__version__} "
                         f"without wheel: pip install -U setuptools {installed_note}")


def _cuda_home():
    """The first CUDA toolkit with both nvcc and the runtime headers, or None.

    torch guesses CUDA_HOME from the nvcc on PATH; where that nvcc is a wrapper script (say
    /usr/local/bin/nvcc) the guess (/usr/local) has no headers, so the usual location follows.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), cpp_extension.CUDA_HOME, "/usr/local/cuda"]
    for home in filter(None, candidates):
        if os.path.exists(os.path.join(home, "bin", "nvcc")) and os.path.exists(
            os.path.join(home, "include", "cuda_runtime_api.h")
        ):
            return home
    return None


def _cuda_decision():
    """Returns (build_cuda, reason); points torch's extension builder at the toolkit it found."""
    switch = os.environ.get("STYLEGAN_OPS_CUDA", "").strip()
    if switch not in ("", "0", "1"):
        raise SystemExit(f"STYLEGAN_OPS_CUDA must be '0', '1' or unset, got {switch!r}")
    if switch == "0":
        return False, "skipped: STYLEGAN_OPS_CUDA=0"
    missing = []
    if torch.version.cuda is None:
        missing.append(f"torch {torch.__version__} is not a CUDA build")
    home = _cuda_home()
    if home is None:
        missing.append(f"no CUDA toolkit with nvcc and headers (CUDA_HOME={os.environ.get('CUDA_HOME')}, "
                       f"torch's guess {cpp_extension.CUDA_HOME})")
    if missing:
        if switch == "1":
            raise SystemExit("STYLEGAN_OPS_CUDA=1 but CUDA kernels cannot be built: " + "; ".join(missing))
        return False, "; ".join(missing)
    os.environ["CUDA_HOME"] = cpp_extension.CUDA_HOME = home
    return True, f"torch CUDA {torch.version.cuda}, CUDA toolkit at {home}"


def _cpu_vector_flags():
    """AVX2+FMA+F16C (as ATen builds its AVX2 kernels) for at::vec::Vectorized when the building machine has them (x86-64 only).

    Without CPU_CAPABILITY_AVX2 the Vectorized headers fall back to scalar loops. The
    extension is built from source where it runs; STYLEGAN_OPS_CPU_VEC=0 builds portable code.
    """
    if os.environ.get("STYLEGAN_OPS_CPU_VEC", "1") == "0" or platform.machine() not in ("x86_64", "AMD64"):
        return [], "portable"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = set(cpuinfo.read().split())
    except OSError:
        return [], "portable (no /proc/cpuinfo)"
    if not {"avx2", "fma", "f16c"} <= flags:
        return [], "portable (no AVX2/FMA/F16C)"
    return ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"], "AVX2+FMA+F16C"


def _extension():
    _check_build_requirements()
    build_cuda, reason = _cuda_decision()
    vector_flags, vector_reason = _cpu_vector_flags()
    print(f"stylegan_ops: CPU kernels vectorised for {vector_reason}", flush=True)
    sources = sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "autograd", "*.cpp")) +
                     glob.glob(os.path.join(CSRC, "cpu", "*.cpp")))
    # -fopenmp: at::parallel_for is inline and runs serially in a TU compiled without OpenMP.
    cxx_flags = ["-O3", "-fopenmp"] + vector_flags
    define_macros = []
    if not build_cuda:
        print(f"stylegan_ops: building C++ CPU kernels only ({reason})", flush=True)
        return cpp_extension.CppExtension(
            "stylegan_ops._C",
            sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
            define_macros=define_macros,
        )

    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
        print("stylegan_ops: no GPU visible and TORCH_CUDA_ARCH_LIST unset: building for 9.0 (Hopper) only; "
              "other GPUs need their own, e.g. TORCH_CUDA_ARCH_LIST=\"8.0;8.6;8.9;9.0\" (native is unavailable "
              "on a GPU the build has no code for)", flush=True)
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "from the visible GPU")
    print(f"stylegan_ops: building C++ CPU and CUDA kernels ({reason}; TORCH_CUDA_ARCH_LIST={arch_list})", flush=True)
    sources += sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")))
    define_macros += [("WITH_CUDA", None), ("STYLEGAN_OPS_CUDA_ARCH_LIST", f'"{arch_list}"')]
    # -lineinfo keeps compute-sanitizer reports readable at no runtime cost; no fast-math:
    # the tolerances in DESIGN.md leave no room for approximate rsqrt/division.
    nvcc_flags = ["-O3", "-lineinfo"]
    return cpp_extension.CUDAExtension(
        "stylegan_ops._C",
        sources,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
        extra_link_args=["-fopenmp"],
        define_macros=define_macros,
    )


def _license():
    if _major_minor(setuptools.__version__) >= SETUPTOOLS_WITH_LICENSE_EXPRESSION:
        return {"license_expression": "MIT"}
    return {"license": "MIT"}


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    **_license(),
)
