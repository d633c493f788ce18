"""The compiled CUDA kernels' registers, spills, shared-memory loads and vector stores, read from the
extension's cubins with Triton's cuobjdump: no GPU needed. The upsample_conv2d tensor-core GEMM kernels are
meant to run at a residency set by __launch_bounds__: the forward's phase_conv_kernel one block of 16 warps
per SM, at most 128 registers a thread (none spilled since it loads a stage after its one barrier a stage, the
copies kept a loop; before, float16's spilled 32 bytes, reloaded in its staging part); dx's
phase_conv_kernel two blocks of 4 warps, as many as its 86 KiB of shared memory allow on an H100, up to
255; grad_weight_kernel two blocks of 6 warps, up to 168 (float32's too). A change that pushes a kernel
past its budget spills instead, and a spill would show here first: none of them spills.
Their operands are staged in shared memory and must be read from there by shared-memory loads
(LDS, LDSM), not generic ones (LD), which nvcc made of its bfloat16 WMMA loads (the kernels
have since issued ldmatrix themselves). The kernels' 16-byte vector paths must write whole
vectors (STG.E.128), which nvcc had split into element stores (see store_packed in
csrc/cuda/packed.h)."""

import re

import pytest

import stylegan_ops as so
from sass_report import copy_loops, cuobjdump_path, instructions, loop_bodies, opcode_counts, resource_usage
from stylegan_ops import _extension

GEMM_KERNELS = ("phase_conv_kernel", "grad_weight_kernel")
HALF_TYPES = ("IN3c108BFloat16E", "IN3c104HalfE")  # as the (mangled) template arguments read


@pytest.fixture(scope="module")
def library():
    """The built extension, whose cubins cuobjdump reads."""
    if so.build_info()["cuda"] is None:
        pytest.skip("the extension was built without CUDA kernels")
    if cuobjdump_path() is None:
        pytest.skip("Triton's cuobjdump is not there")
    return _extension._C.__file__


def _is_tensor_core_gemm(name):
    return any(k in name for k in GEMM_KERNELS) and any(t in name for t in HALF_TYPES)


def _register_budget(name):
    """The registers a thread that a GEMM kernel's __launch_bounds__ residency leaves: d weight two
    blocks of 6 warps, dx two of 4 and float32's forward one of 8 (up to 255), the 16-bit forward
    one of 16."""
    if "grad_weight_kernel" in name:
        return 168
    if "ELi4ELi1EE" in name or "phase_conv_kernelIf" in name:  # dx: phase_conv_kernel<scalar_t, 4, 1>
        return 255
    return 128


def test_tensor_core_gemm_kernels_fit_their_residency(library):
    usage = resource_usage(library)
    checked = {name: regs_stack for name, regs_stack in usage.items() if _is_tensor_core_gemm(name)}
    assert len(checked) == 6, sorted(usage)  # phase_conv (forward, dx) and grad_weight, in fp16 and bf16
    for name, (registers, stack) in checked.items():
        assert registers <= _register_budget(name) and stack == 0, (name, registers, stack)


def test_tensor_core_gemm_kernels_read_shared_memory_with_shared_loads(library):
    kernels = instructions(library, _is_tensor_core_gemm)
    assert len(kernels) == 6, sorted(kernels)
    for name, code in kernels.items():
        counts = opcode_counts(code)
        assert counts["LD"] == 0 and counts["LDSM"] > 0, (name, counts["LD"], counts["LDS"], counts["LDSM"])


def test_tensor_core_gemm_kernels_stage_a_vector_in_few_instructions(library):
    """The GEMM kernels' staging loops read each pixel's offset from a table the block made once
    (halo_offsets, x_pixel_offsets, a_pixel_offsets), a thread's vectors are at fixed channels
    (their source pointer made once a stage), and d weight's tiles inside x copy without bounds: a
    16-byte vector's load takes 10 (d weight, such tiles) to 32 SASS instructions. Computed whole
    per vector it took 68 to 115 (tests/sass_report.py --library on the kernel file of afaf095),
    more issue slots than dx's HMMA had; with the tables alone, 30 to 37 (4153b8f)."""
    kernels = instructions(library, _is_tensor_core_gemm)
    for name, code in kernels.items():
        loops = copy_loops(code)
        assert loops and all(length / vectors <= 36 for length, vectors in loops), (name, loops)


def test_float32_gemms_multiply_as_3xtf32_without_spilling(library):
    """float32's forward, dx and d weight multiply on the tensor cores as 3xTF32 (TensorCoreMma,
    split_tf32 in csrc/cuda/upsample_conv2d_kernel.cu): three m16n8k8 TF32 products
    (HMMA.1688.F32.TF32) a tile and k-step, where the forward's main loop issued 2048 FFMA a stage
    on the CUDA cores. With both parts of the split converted by cvt.rna.tf32.f32 that loop took
    1646 instructions a stage and the kernels 255 registers with 48 (forward) and 120 (dx) bytes of
    spills; split with a mask and a subtraction, 1005, and 171 and 183 registers without spills. d
    weight's operands, read transposed, load a word a lane from shared memory (load_shared: LDS,
    not a generic LD); its main loop went from 4090 instructions a stage (2529 multiplying on the
    CUDA cores, 157 registers, one block an SM) to 2603 (990), 142 registers, within the 168 of its
    two blocks of 6 warps an SM (_register_budget)."""
    usage = resource_usage(library)
    kernels = instructions(library, lambda name: any(f"{kernel}If" in name for kernel in GEMM_KERNELS))
    assert len(kernels) == 3, sorted(kernels)  # forward, dx, d weight
    for name, code in kernels.items():
        counts = opcode_counts(code)
        tf32 = counts["HMMA.1688.F32.TF32"]
        assert tf32 > 0 and tf32 % 3 == 0 and counts["HMMA"] == tf32, (name, tf32, counts["HMMA"])
        assert counts["FFMA"] < tf32, (name, counts["FFMA"])
        assert counts["LD"] == 0, (name, counts["LD"])
        registers, stack = usage[name]
        assert registers <= _register_budget(name) and stack == 0, (name, registers, stack)


# The kernels with 16-byte vector paths: the noise_adain_lrelu per-plane kernels and upsample_conv2d's
# window_means_kernel of vector width > 1 (template argument Li8E, Li4E or Li2E after the scalar
# type), and every phase_conv_kernel.
VECTOR_KERNELS = re.compile(
    r"(forward|backward|window_means)_kernelI(N3c108BFloat16E|N3c104HalfE|f|d)Li[248]E|phase_conv_kernel")


def test_vector_paths_store_whole_vectors(library):
    kernels = instructions(library, VECTOR_KERNELS.search)
    # noise: (dtype, plane cache, direction); window means: dtype; phase_conv's
    assert len(kernels) == 4 * 2 * 2 + 4 + 8, sorted(kernels)
    for name, code in kernels.items():
        counts = opcode_counts(code)
        assert counts["STG.E.128"] > 0, (name, {k: v for k, v in counts.items() if k.startswith("STG")})


# noise_adain_lrelu's statistics loops that sweep planes by 16-byte vectors of 8 half or bfloat16
# values: the forward for planes beyond the register cache (PlaneCache::kNone, template argument
# ELNS0_10PlaneCacheE1E) and the range kernels' first pass (PlaneMajor<8>).
SWEPT_STATISTICS = re.compile(r"forward_kernelI(N3c108BFloat16E|N3c104HalfE)Li8ELNS0_10PlaneCacheE1E"
                              r"|range_stats_kernelI(N3c108BFloat16E|N3c104HalfE)NS0_10PlaneMajorILi8EEE")


def test_swept_statistics_add_a_chunk_a_vector_without_division(library):
    """The statistics loops (those that load in 16-byte vectors and store nothing) add a chunk of 8
    values (one vector) to double sums about the plane's first value (add_chunk in
    csrc/cuda/noise_adain_lrelu_kernel.cu): 3 conversions to double a chunk, so at most 3 a 16-byte
    load, and no division. The range kernels converted and added each value in double (8 a
    vector); the swept forward merged float Welford summaries, a division (FCHK) a vector."""
    kernels = instructions(library, SWEPT_STATISTICS.search)
    assert len(kernels) == 4, sorted(kernels)
    for name, code in kernels.items():
        loops = [counts for counts in map(opcode_counts, loop_bodies(code))
                 if counts["LDG.E.128.CONSTANT"] > 0 and counts["STG"] == 0]
        assert loops, name
        for counts in loops:  # x's load, and the noise's where there is one
            assert counts["FCHK"] == 0, (name, counts["FCHK"])
            assert counts["F2F.F64.F32"] <= 3 * counts["LDG.E.128.CONSTANT"], (name, counts["F2F.F64.F32"])
