"""Loads the compiled extension ``stylegan_ops._C`` once and records why, if it cannot; says
whether a CUDA device can run its kernels."""

import torch  # (libtorch must be loaded before _C)

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


# The reason, or None, per CUDA device index: asked once a process (a device's answer cannot change).
_CUDA_DEVICE_REASONS: dict[int, str | None] = {}


@torch.compiler.assume_constant_result  # torch.compile calls it while tracing, as eager does
def cuda_device_unsupported_reason(index: int) -> str | None:
    """Why the CUDA kernels of this build cannot run on CUDA device ``index``, or None if they can.

    They are made for compute capability 8.0 and newer (cp.async, ldmatrix, bfloat16 mma.sync, up
    to 93 KiB of shared memory a block), and a build holds code only for the architectures of its
    TORCH_CUDA_ARCH_LIST (9.0 when no GPU was visible to the build): on any other device the
    first launch fails ("no kernel image is available"), so ``_C.cuda_kernel_image_error`` asks the
    CUDA runtime to load one of the build's kernels there first."""
    if index not in _CUDA_DEVICE_REASONS:
        major, minor = torch.cuda.get_device_capability(index)
        if (major, minor) < (8, 0):
            reason = (f"cuda:{index} has compute capability {major}.{minor}, and stylegan_ops' CUDA kernels "
                      "are made for 8.0 and newer")
        elif error := _C.cuda_kernel_image_error(index):
            reason = (f"this build's CUDA kernels were compiled for TORCH_CUDA_ARCH_LIST={_C.cuda_arch_list!r}, "
                      f"which cuda:{index} (compute capability {major}.{minor}) cannot run ({error}); rebuild "
                      f"with TORCH_CUDA_ARCH_LIST=\"{major}.{minor}\" set")
        else:
            reason = None
        _CUDA_DEVICE_REASONS[index] = reason
    return _CUDA_DEVICE_REASONS[index]
