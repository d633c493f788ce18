"""Autocast for the fused ops: inside ``torch.autocast`` they run in the autocast dtype.

``torch.library.register_autocast`` casts to one fixed dtype; the ops instead follow the
region's own dtype (float16 or bfloat16), like cuDNN convolutions do, and are then called
with autocast off. Statistics and accumulations stay float32 inside every backend.
"""

import contextlib

import torch


def autocast_region(x, *tensors):
    """((x, *tensors), context to call the op in). If autocast is on for x's device, the floating
    tensors come back cast to the autocast dtype and the context turns autocast off."""
    # The devices with kernels here. Elsewhere only eager runs, its PyTorch ops under PyTorch's own
    # autocast rules, and is_autocast_enabled raises for some device types (meta). is_cuda and is_cpu,
    # not device.type, which makes a torch.device and a str: this runs on every call of an op.
    device_type = None  # also for an x that is no tensor, which the op's checks refuse
    if isinstance(x, torch.Tensor):
        device_type = "cuda" if x.is_cuda else "cpu" if x.is_cpu else None
    if device_type is None or not torch.is_autocast_enabled(device_type):
        return (x, *tensors), contextlib.nullcontext()
    dtype = torch.get_autocast_dtype(device_type)
    cast = tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in (x, *tensors))
    return cast, torch.autocast(device_type, enabled=False)
