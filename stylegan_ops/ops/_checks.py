"""Argument checks shared by the ops: every message names the argument and what was expected."""

import numbers

import torch

FLOAT_DTYPES = frozenset((torch.float16, torch.bfloat16, torch.float32, torch.float64))


def _format_shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_tensor(op: str, name: str, tensor, *shapes) -> None:
    """``tensor`` is a floating tensor of one of ``shapes`` (tuples of ints or names; names match any size)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got {tensor.dtype}")
    got = tensor.shape
    for shape in shapes:
        if got == shape or _matches(got, shape):  # ==: a shape of sizes only, in one C comparison
            return
    expected = " or ".join(_format_shape(shape) for shape in shapes)
    raise ValueError(f"{op}: {name} must have shape {expected}, got {_format_shape(tuple(got))}")


def _matches(got, shape) -> bool:
    # A plain loop, not all() over a generator: this runs on every call of an op (half the cost).
    if len(got) != len(shape):
        return False
    for size, want in zip(got, shape):
        if type(want) is int and size != want:
            return False
    return True


def check_same_device_and_dtype(op: str, reference_name: str, reference: torch.Tensor, **others) -> None:
    """Every tensor in ``others`` (None skipped) is on ``reference``'s device with its dtype."""
    device, dtype = reference.device, reference.dtype
    for name, tensor in others.items():
        if tensor is None:
            continue
        if tensor.device != device:
            raise RuntimeError(
                f"{op}: {name} is on {tensor.device} but {reference_name} is on {reference.device}; "
                "all tensors must be on one device"
            )
        if tensor.dtype != dtype:
            raise TypeError(
                f"{op}: {name} has dtype {tensor.dtype} but {reference_name} has {reference.dtype}; "
                "all tensors must have one dtype"
            )


def check_real(op: str, name: str, value) -> float:
    if type(value) is float:  # the usual case, without the ABC check (a tenth of its cost)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__}")
    return float(value)
