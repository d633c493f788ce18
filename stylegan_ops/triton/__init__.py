"""Triton kernels, one file per op (forward and backward). Imported lazily: TRITON_INTERPRET is read at import."""

import functools
import logging
import os
import time

import torch

from stylegan_ops.ops._dtypes import accumulation_dtype


def interpreted(kernel) -> bool:
    """Whether ``kernel`` runs in Triton's interpreter. Triton decides that when it decorates the
    kernel (from TRITON_INTERPRET, read when the kernel's module is imported), whatever device the
    tensors are on later; the launchers follow that decision: small fixed configs and no autotuning
    in the interpreter, GPU configs for a compiled kernel."""
    import triton  # here, so that autotune_on_gpu can be read without Triton installed

    return not isinstance(kernel, triton.runtime.JITFunction)


def autotune_on_gpu():
    """Whether GPU launches autotune (the default). ``STYLEGAN_OPS_TRITON_AUTOTUNE=0`` runs one fixed
    config per kernel instead: a correct but untuned launch that skips the autotuner's compile of
    every candidate config, for test and sanitizer runs. The interpreter never autotunes."""
    value = os.environ.get("STYLEGAN_OPS_TRITON_AUTOTUNE", "1")
    if value not in ("0", "1"):
        raise ValueError(f"STYLEGAN_OPS_TRITON_AUTOTUNE must be '0' or '1', got {value!r}")
    return value == "1"


@functools.cache
def tl_accumulation_dtype(dtype):
    """``accumulation_dtype(dtype)`` as a Triton dtype, the kernels' ACC argument."""
    import triton.language as tl

    return {torch.float32: tl.float32, torch.float64: tl.float64}[accumulation_dtype(dtype)]


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for the launchers' grid arithmetic. triton.cdiv is a ConstexprFunction: about 2 us
    a call from Python (Triton 3.6 and 3.8), against a few hundredths for this."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The least power of two >= n >= 1, for the launchers' block sizes; as for cdiv, triton's own
    takes about 2 us a call from Python."""
    return 1 << (n - 1).bit_length()


def autotune(configs, key):
    """``triton.autotune(configs, key=key)`` whose choices persist in Triton's cache directory
    (``cache_results``; TRITON_CACHE_DIR, ~/.triton/cache by default): a later process that launches
    a key an earlier one tuned, with the same kernel source, configs and GPU architecture, takes
    the earlier choice instead of timing every config again. Tuning the generator's levels took
    95 s of the first training step on the H100 at 4153b8f (256 px, batch 8)."""
    import triton

    return triton.autotune(configs, key=key, cache_results=True)


_CHOSEN_CONFIGS = {}  # (autotuned kernel, dtype, its key arguments) -> the triton.Config it chose
_KEY_POSITIONS = {}  # autotuned kernel -> positions of its autotune key among the launch's arguments
_LOG = logging.getLogger(__name__)
# A first launch for a key that takes longer (the autotuner compiling and timing its configs, or
# compiling the choice it found in Triton's cache) is reported, as a warning so that it shows unless
# logging is set to hide it: a 256 px generator's first training step spent 95 s of an H100's time
# in them, which would otherwise pass in silence.
SLOW_FIRST_LAUNCH_SECONDS = 1.0


def launch_autotuned(autotuned, grid, *args, **kwargs):
    """``autotuned[grid](*args, **kwargs)``, the autotuner consulted once per key.

    Triton's Autotuner rebuilds its cache key from all the launch's arguments on every call (a dict
    of them and each tensor's dtype as a string: 20 to 25 us of a launch's CPU time, measured with
    the compile-only driver of tests/triton_sm90_compile.py). Here the first launch for a key goes
    through the autotuner (which tunes, or finds its earlier choice) and later ones launch the
    kernel with the config it chose. The key is the autotuner's own: the values of its key
    arguments (which every launcher passes positionally) and the tensors' dtype, which in every
    launch here follows the first argument's."""
    positions = _KEY_POSITIONS.get(autotuned)
    if positions is None:
        positions = _KEY_POSITIONS[autotuned] = [autotuned.arg_names.index(name) for name in autotuned.keys]
    key = (autotuned, args[0].dtype, *(args[p] for p in positions))
    config = _CHOSEN_CONFIGS.get(key)
    if config is None:
        start = time.perf_counter()
        autotuned[grid](*args, **kwargs)
        config = _CHOSEN_CONFIGS[key] = autotuned.best_config
        seconds = time.perf_counter() - start
        if seconds >= SLOW_FIRST_LAUNCH_SECONDS:
            _LOG.warning("stylegan_ops: the first launch of Triton's %s for %s, %s took %.1f s, autotuning and "
                         "compiling (once per shape and GPU architecture: the choice is kept in Triton's cache "
                         "directory): %s", autotuned.base_fn.__name__, str(key[1]).removeprefix("torch."),
                         dict(zip(autotuned.keys, key[2:])), seconds, config)
    else:
        autotuned.fn[grid](*args, **kwargs, **config.all_kwargs())


def chosen_configs():
    """The autotuner's choices so far, one dict per (kernel, dtype, key values), for benchmark results."""
    return [{"kernel": autotuned.base_fn.__name__, "dtype": str(dtype).removeprefix("torch."),
             "key": dict(zip(autotuned.keys, values)), "config": str(config)}
            for (autotuned, dtype, *values), config in _CHOSEN_CONFIGS.items()]


def multiprocessor_count(device):
    """The SMs of a CUDA device. On CPU (the interpreter, tests) a stand-in of 4, so that small
    test shapes already take the launchers' splitting paths."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4


def on_inputs_device(launcher):
    """``launcher`` run with its first argument's CUDA device current. Triton launches on the current
    device whatever device the tensors are on: a model on cuda:1 would have its kernels launched on
    cuda:0 with cuda:1's pointers. CPU tensors (the interpreter) need no device."""

    @functools.wraps(launcher)
    def on_device(first, *args):
        if not first.is_cuda:
            return launcher(first, *args)
        with torch.cuda.device(first.device):
            return launcher(first, *args)

    return on_device
