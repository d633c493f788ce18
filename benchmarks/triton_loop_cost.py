"""The static cost of the Triton upsample_conv2d GEMM loops on an H100 (sm_90), without a GPU.

The launchers run on CPU tensors with Triton's driver replaced by the compile-only one of
tests/triton_sm90_compile.py, autotuning on, so that every config the GPU's autotuner would time
is compiled. For each GEMM kernel and config this reads the main loop (the backward branch around
the tensor-core instructions; for a version whose float32 GEMMs ran on the CUDA cores, the longest
loop) from the cubin's SASS (Triton's nvdisasm) and prints its instructions per thread and GMMA
per warpgroup, and per iteration of a block: the cycles the block's warps need to issue them
(instructions x warps / 4 schedulers) against the cycles the tensor cores need for its
BLOCK_M x BLOCK_N x BLOCK_K multiply-adds (2048 a clock per SM: the H100's dense 16-bit rate, 989
TFLOP/s at 1.83 GHz on 132 SMs; TF32 at half that, and float32's 3xTF32 three TF32 products a
multiply-add). A loop that takes longer to issue than to multiply cannot keep the tensor cores
busy, whatever its latencies.

    python benchmarks/triton_loop_cost.py [--shape N,C_in,C_out,H,W] [--dtype bfloat16|float16|float32]

TRITON_INTERPRET must be unset. To compare two versions, run it with each on PYTHONPATH.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from triton_sm90_compile import CompileOnlyDriver, activate  # noqa: E402

# Multiply-adds a clock per SM on the tensor cores, dense (H100 SXM): 16-bit operands, and float32
# as 3xTF32 (three TF32 products, TF32 at half the 16-bit rate).
TENSOR_MACS_PER_CLOCK = {"bfloat16": 2048, "float16": 2048, "float32": 1024 / 3}
SCHEDULERS = 4  # per SM: each issues one warp instruction a clock
GEMM_KERNELS = ("_forward_kernel", "_grad_x_kernel", "_grad_weight_kernel")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="8,512,512,32,32", help="N,C_in,C_out,H,W (default: the profiled case)")
    parser.add_argument("--dtype", default="bfloat16", choices=tuple(TENSOR_MACS_PER_CLOCK))
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        parser.error("unset TRITON_INTERPRET: interpreted kernels are never compiled")
    shape = tuple(map(int, args.shape.split(",")))
    loops = gemm_loops(shape, args.dtype)
    import triton

    print(f"Triton {triton.__version__}, sm_90, {args.dtype} channels_last {shape}")
    print(f"{'kernel':<20} {'BMxBNxBK':<12} {'warps':>5} {'stages':>6} {'regs':>4} {'loop instr':>10} {'GMMA':>5} "
          f"{'issue clk':>9} {'tensor clk':>10}")
    for record, instructions, mma in loops:
        blocks = dict(re.findall(r"(BLOCK_[MNK])=(\d+)", record.constants))
        bm, bn, bk = (int(blocks[name]) for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K"))
        issue = instructions * record.num_warps / SCHEDULERS
        tensor = bm * bn * bk / TENSOR_MACS_PER_CLOCK[args.dtype]
        print(f"{record.kernel:<20} {f'{bm}x{bn}x{bk}':<12} {record.num_warps:>5} {record.num_stages:>6} "
              f"{record.registers:>4} {instructions:>10} {mma:>5} {issue:>9.0f} {tensor:>10.0f}")


def gemm_loops(shape, dtype, autotune=True):
    """[(compiled record, loop instructions a thread, GMMA a warpgroup)] of the GEMM kernels'
    main loops for a channels_last forward and backward (dx and d weight) at ``shape``
    (N, C_in, C_out, H, W) in ``dtype`` (a name): every config the GPU's autotuner would time, or
    with ``autotune=False`` the fixed one. Call with TRITON_INTERPRET unset, in a process that
    launches no other Triton kernel (the compile-only driver replaces Triton's)."""
    os.environ["STYLEGAN_OPS_TRITON_AUTOTUNE"] = "1" if autotune else "0"
    import triton

    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    compile_only = activate(KeepingCubins())
    from stylegan_ops.triton import upsample_conv2d as kernels

    n, c_in, c_out, h, w = shape
    dtype = getattr(torch, dtype)
    x = torch.empty(n, c_in, h, w, dtype=dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.zeros(c_out, c_in, 3, 3, dtype=dtype)
    grad_y = torch.empty(n, c_out, 2 * h, 2 * w, dtype=dtype).contiguous(memory_format=torch.channels_last)
    kernels.forward(x, weight, None)
    kernels.backward(grad_y, x, weight, [True, True, False])
    return [(record, *main_loop(sass(cubin, str(tools / "nvdisasm"))))
            for record, cubin in compile_only.cubins if record.kernel in GEMM_KERNELS]


class KeepingCubins(CompileOnlyDriver):
    """The compile-only driver, keeping each loaded cubin beside its record."""

    def __init__(self):
        super().__init__()
        self.cubins = []

    def load_binary(self, name, cubin, shared, device):
        loaded = super().load_binary(name, cubin, shared, device)
        self.cubins.append((self.compiled[-1], cubin))
        return loaded


def sass(cubin, nvdisasm):
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([nvdisasm, "-c", f.name], capture_output=True, text=True, check=True).stdout


def main_loop(listing):
    """(instructions, GMMA) of the loop with tensor-core instructions, from a label to the last
    backward branch to it; without one (a GEMM on the CUDA cores), of the longest loop."""
    instructions, label_at = [], {}
    pending = None
    for line in listing.splitlines():
        label = re.match(r"^(\.L_x_\d+):", line)
        if label:
            pending = label.group(1)
            continue
        instruction = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)
        if instruction:
            address = int(instruction.group(1), 16)
            if pending:
                label_at[pending], pending = address, None
            instructions.append((address, instruction.group(2)))
    loops = []
    for address, text in instructions:
        branch = re.search(r"BRA\s+`\((\.L_x_\d+)\)", text)
        if branch and label_at.get(branch.group(1), address) < address:
            body = [t for a, t in instructions if label_at[branch.group(1)] <= a <= address]
            loops.append((len(body), sum("GMMA." in t for t in body)))
    tensor_core_loops = [loop for loop in loops if loop[1]]
    if len(tensor_core_loops) > 1 or not loops:
        raise RuntimeError(f"expected one loop with tensor-core instructions, found {len(tensor_core_loops)}")
    return tensor_core_loops[0] if tensor_core_loops else max(loops)


if __name__ == "__main__":
    main()
