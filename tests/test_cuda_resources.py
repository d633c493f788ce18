"""The compiled CUDA kernels' registers, spills, shared-memory loads and vector stores, read from the
extension's cubins with Triton's cuobjdump: no GPU needed. The upsample_conv2d tensor-core GEMM kernels are
meant to run two 256-thread blocks per SM (__launch_bounds__), which needs at most 128 registers a
thread; a change that pushes them past it spills instead, and a large spill would show here first.
Their operands are staged in shared memory and must be read from there by shared-memory loads
(LDS, LDSM), not generic ones (LD), which nvcc made of its bfloat16 WMMA loads (see load_shared
in csrc/cuda/upsample_conv2d_kernel.cu). The kernels' 16-byte vector paths must write whole
vectors (STG.E.128), which nvcc had split into element stores (see store_packed in
csrc/cuda/packed.h)."""

import os
import re
import subprocess

import pytest

import stylegan_ops as so
from stylegan_ops import _extension

GEMM_KERNELS = ("phase_conv_kernel", "grad_weight_kernel")
HALF_TYPES = ("IN3c108BFloat16E", "IN3c104HalfE")  # as the (mangled) template arguments read


def _cuobjdump(option):
    """cuobjdump's output for the extension, as lines."""
    if so.build_info()["cuda"] is None:
        pytest.skip("the extension was built without CUDA kernels")
    triton = pytest.importorskip("triton")
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(cuobjdump):
        pytest.skip("Triton's cuobjdump is not there")
    return subprocess.run([cuobjdump, option, _extension._C.__file__], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def _is_tensor_core_gemm(name):
    return any(k in name for k in GEMM_KERNELS) and any(t in name for t in HALF_TYPES)


def _resource_usage():
    """{mangled kernel name: (registers, stack bytes)} for every kernel of the extension."""
    out = _cuobjdump("--dump-resource-usage")
    usage = {}
    for line, next_line in zip(out, out[1:]):
        function = re.search(r"Function (\S+):", line)
        resources = re.search(r"REG:(\d+) STACK:(\d+)", next_line)
        if function and resources:
            usage[function.group(1)] = (int(resources.group(1)), int(resources.group(2)))
    return usage


def test_tensor_core_gemm_kernels_fit_two_blocks_per_sm():
    usage = _resource_usage()
    checked = {name: regs_stack for name, regs_stack in usage.items() if _is_tensor_core_gemm(name)}
    assert len(checked) == 6, sorted(usage)  # phase_conv (forward, dx) and grad_weight, in fp16 and bf16
    for name, (registers, stack) in checked.items():
        assert registers <= 128 and stack <= 128, (name, registers, stack)


def _opcodes(is_kernel):
    """{kernel: {opcode with its modifiers: count}} of the SASS of the kernels is_kernel picks."""
    found = {}
    kernel = None
    for line in _cuobjdump("-sass"):
        function = re.search(r"Function : (\S+)", line)
        if function:
            kernel = function.group(1) if is_kernel(function.group(1)) else None
            continue
        opcode = re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z][\w.]*)", line) if kernel else None
        if opcode:
            counts = found.setdefault(kernel, {})
            counts[opcode.group(1)] = counts.get(opcode.group(1), 0) + 1
    return found


def test_tensor_core_gemm_kernels_read_shared_memory_with_shared_loads():
    kernels = _opcodes(_is_tensor_core_gemm)
    assert len(kernels) == 6, sorted(kernels)
    for name, counts in kernels.items():
        loads = {}  # LD (generic), LDS, LDSM, whatever their modifiers
        for opcode, count in counts.items():
            if opcode.split(".")[0] in ("LD", "LDS", "LDSM"):
                loads[opcode.split(".")[0]] = loads.get(opcode.split(".")[0], 0) + count
        assert loads.get("LD", 0) == 0 and loads.get("LDSM", 0) > 0, (name, loads)


# The kernels with 16-byte vector paths: the noise_adain_lrelu per-plane kernels of vector width > 1
# (template argument Li8E, Li4E or Li2E after the scalar type) and every phase_conv_kernel.
VECTOR_KERNELS = re.compile(r"(forward|backward)_kernelI(N3c108BFloat16E|N3c104HalfE|f|d)Li[248]E|phase_conv_kernel")


def test_vector_paths_store_whole_vectors():
    kernels = _opcodes(VECTOR_KERNELS.search)
    assert len(kernels) == 4 * 3 * 2 + 8, sorted(kernels)  # (dtype, plane cache, direction); phase_conv's
    for name, counts in kernels.items():
        assert counts.get("STG.E.128", 0) > 0, (name, {k: v for k, v in counts.items() if k.startswith("STG")})
