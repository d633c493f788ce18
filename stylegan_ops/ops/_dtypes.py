"""The dtype rule of every kernel (csrc's at::opmath_type): float16, bfloat16 and float32 inputs are
computed and accumulated in float32, float64 in float64."""

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype kernels compute, accumulate and keep statistics in for inputs of ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32
