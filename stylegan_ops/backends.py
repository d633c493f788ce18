"""Which backend runs an op on a device, and why another one cannot.

``eager`` runs anywhere. ``native`` needs the compiled extension (and for CUDA tensors its CUDA
kernels, compiled for the device's architecture, which must be compute capability 8.0 or newer).
``triton`` needs Triton and a CUDA device, or a CPU tensor under ``TRITON_INTERPRET=1``. ``auto``
takes the first of :data:`AUTO_ORDER` that can run and warns once per cause when it has to pass
over a faster one.
"""

import importlib.util
import os
import warnings
from collections.abc import Collection

import torch

from stylegan_ops import _extension

BACKENDS = ("eager", "native", "triton")
# Fastest first. Triton on CPU tensors is the (very slow) interpreter: tests only, never auto.
AUTO_ORDER = {"cuda": ("native", "triton", "eager"), "cpu": ("native", "eager")}

_warned_causes: set[str] = set()


def _as_device(device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if isinstance(device, str):
        return torch.device(device)
    raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")


# Looked up once: a search of sys.path on every Triton op call cost ~40 us (and a constant, unlike a
# cached function, is what torch.compile's tracing reads without a warning).
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def unavailable_reason(backend: str, device, op: str | None = None, implemented: Collection[str] = BACKENDS):
    """Why ``backend`` cannot run ``op`` on ``device``, or None if it can."""
    device = _as_device(device)
    device_type = device.type  # read once: each read makes a new str
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, got {backend!r}")
    if backend not in implemented:
        return f"stylegan_ops has no {backend} implementation of {op} yet"
    if backend == "eager":
        return None
    if device_type not in ("cpu", "cuda"):
        return f"the {backend} backend has no kernels for {device_type} tensors"
    if backend == "native":
        if not _extension.is_loaded():
            return _extension.LOAD_ERROR
        if device_type == "cuda" and _extension.cuda_version() is None:
            return (
                "the extension stylegan_ops._C was built without CUDA kernels (torch was not a CUDA "
                "build, nvcc was not found, or STYLEGAN_OPS_CUDA=0); rebuild with CUDA_HOME set"
            )
    else:  # triton
        if not _TRITON_INSTALLED:
            return "Triton is not installed (pip install triton)"
        if device_type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            return "Triton kernels run on CPU tensors only under the interpreter (set TRITON_INTERPRET=1 before import)"
    if device_type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device is usable here (torch.cuda.is_available() is False)"
    if device_type == "cuda" and backend == "native":
        return _extension.cuda_device_unsupported_reason(
            torch.cuda.current_device() if device.index is None else device.index)
    return None


def available_backends(device) -> list[str]:
    """The backends that can run every stylegan_ops op on ``device`` ("cpu", "cuda" or a torch.device)."""
    from stylegan_ops.ops import IMPLEMENTED_BACKENDS

    return [
        backend
        for backend in BACKENDS
        if all(unavailable_reason(backend, device, op, impl) is None for op, impl in IMPLEMENTED_BACKENDS.items())
    ]


def resolve(backend: str, device: torch.device, op: str, implemented: Collection[str]) -> str:
    """The concrete backend that runs ``op`` for tensors on ``device``; raises RuntimeError if it cannot."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, got {type(backend).__name__}")
    if backend != "auto":
        reason = unavailable_reason(backend, device, op, implemented)
        if reason is not None:
            raise RuntimeError(f"stylegan_ops.{op}: backend={backend!r} cannot run on {device.type} tensors: {reason}")
        return backend
    order = AUTO_ORDER.get(device.type, ("eager",))
    for candidate in order:
        reason = unavailable_reason(candidate, device, op, implemented)
        if reason is None:
            return candidate
        if reason not in _warned_causes:
            _warned_causes.add(reason)
            warnings.warn(
                f"stylegan_ops.{op}: backend='auto' passes over {candidate!r} on {device.type}: {reason}",
                RuntimeWarning,
                stacklevel=3,
            )
    raise AssertionError("unreachable: eager is always available")


def resolve_for(backend: str, x: torch.Tensor, op: str, implemented: Collection[str]) -> str:
    """``resolve`` for an op's input x. An empty x (some size 0) still has its backend checked,
    then runs eager: there is nothing to compute, eager gives the empty result (and zero
    gradients) that PyTorch gives, and the kernels assume at least one element per plane."""
    chosen = resolve(backend, x.device, op, implemented)
    return "eager" if x.numel() == 0 else chosen
