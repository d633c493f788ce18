"""Loads the compiled extension ``stylegan_ops._C`` once and records why, if it cannot."""

import torch  # noqa: F401  (libtorch must be loaded before _C)

try:
    from stylegan_ops import _C
except ImportError as error:  # not built, or built against another torch
    _C = None
    LOAD_ERROR = (
        f"the compiled extension stylegan_ops._C could not be imported ({error}); "
        "build it with `pip install --no-build-isolation -e .`"
    )
else:
    LOAD_ERROR = None


def is_loaded() -> bool:
    return _C is not None


def cuda_version() -> str | None:
    """CUDA runtime version the extension's kernels were compiled against ("13.0"), or None."""
    if _C is None or _C.cuda_version == 0:
        return None
    return f"{_C.cuda_version // 1000}.{_C.cuda_version % 1000 // 10}"


def build_info() -> dict:
    """What was compiled in: ``{"extension": bool, "error": str|None, "cuda": str|None, "cuda_arch_list": str|None}``."""
    return {
        "extension": _C is not None,
        "error": LOAD_ERROR,
        "cuda": cuda_version(),
        "cuda_arch_list": (_C.cuda_arch_list or None) if _C is not None else None,
    }
