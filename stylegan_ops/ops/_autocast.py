"""Autocast for the fused ops: inside ``torch.autocast`` they run in the autocast dtype.

``torch.library.register_autocast`` casts to one fixed dtype; the ops instead follow the
region's own dtype (float16 or bfloat16), like cuDNN convolutions do, and are then called
with autocast off. Statistics and accumulations stay float32 inside every backend.
"""

import contextlib

import torch


def autocast_region(*tensors):
    """(tensors, context to call the op in). If autocast is on for the first tensor's device, the
    floating tensors come back cast to the autocast dtype and the context turns autocast off."""
    first = next((t for t in tensors if isinstance(t, torch.Tensor)), None)
    device_type = None if first is None else first.device.type
    # The devices with kernels here. Elsewhere only eager runs, its PyTorch ops under PyTorch's own
    # autocast rules, and is_autocast_enabled raises for some device types (meta).
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return tensors, contextlib.nullcontext()
    dtype = torch.get_autocast_dtype(device_type)
    cast = tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in tensors)
    return cast, torch.autocast(device_type, enabled=False)
