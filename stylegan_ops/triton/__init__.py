"""Triton kernels, one file per op (forward and backward). Imported lazily: TRITON_INTERPRET is read at import."""

import os


def autotune_on_gpu():
    """Whether GPU launches autotune (the default). ``STYLEGAN_OPS_TRITON_AUTOTUNE=0`` runs one fixed
    config per kernel instead: a correct but untuned launch that skips the autotuner's compile of
    every candidate config, for test and sanitizer runs. The interpreter never autotunes."""
    value = os.environ.get("STYLEGAN_OPS_TRITON_AUTOTUNE", "1")
    if value not in ("0", "1"):
        raise ValueError(f"STYLEGAN_OPS_TRITON_AUTOTUNE must be '0' or '1', got {value!r}")
    return value == "1"
