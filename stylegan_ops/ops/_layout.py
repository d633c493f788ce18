"""Layout rules shared by the ops (csrc/layout.h holds their C++ twin; the two must agree, or a
compiled graph would assume strides the kernels do not write)."""

import torch
from torch._prims_common import suggest_memory_format


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    """x's memory format as PyTorch reads it from the strides (``Tensor.suggest_memory_format`` in
    C++): channels_last for a channels_last tensor and for slices of one, else contiguous."""
    return suggest_memory_format(x)


def conv_output_memory_format(x: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """channels_last when x or weight is, as ``F.conv2d`` lays out its output."""
    return torch.channels_last if output_memory_format(weight) == torch.channels_last else output_memory_format(x)
