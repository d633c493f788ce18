"""Triton kernels, one file per op (forward and backward). Imported lazily: TRITON_INTERPRET is read at import."""
