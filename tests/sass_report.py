"""The machine code (sm_90 SASS) of the built extension's CUDA kernels, read and summarised: no GPU needed.

    python tests/sass_report.py [--kernels REGEX] [--library FILE]

Per kernel whose mangled name matches: registers and stack bytes (spills), static instruction count,
and, where a backward branch spans all its matrix or fused multiply-adds (HMMA, FFMA, DFMA), the
length of that main loop and of its multiply part (from the barrier or cp.async commit before the
first multiply-add to the last); then the counts of the instructions that say how data moves: HMMA, LDSM,
LDS and generic LD (shared-memory operand reads), LDGSTS (cp.async), STG.E.128 (16-byte stores),
LDL/STL (local memory); and each staging loop's (cp.async, no multiply-add) length per vector. All
static counts of the code, not of its execution: they show what a stage of a loop executes and what
a change did to it, never how fast it runs. tests/test_cuda_resources.py asserts some of them.
Reads the extension with Triton's cuobjdump (no CUDA toolkit needed).
"""

import argparse
import os
import re
import subprocess
from collections import Counter

MULTIPLY_ADDS = ("HMMA", "FFMA", "DFMA")
REPORTED = ("HMMA", "LDSM", "LDS", "LD", "LDGSTS", "STG.E.128", "LDL", "STL")


def cuobjdump_path():
    """Triton's cuobjdump, or None where Triton (or its copy of the tool) is missing."""
    try:
        import triton
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    return path if os.path.exists(path) else None


def _cuobjdump(option, library):
    return subprocess.run([cuobjdump_path(), option, library], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def resource_usage(library):
    """{mangled kernel name: (registers, stack bytes)}."""
    out = _cuobjdump("--dump-resource-usage", library)
    usage = {}
    for line, next_line in zip(out, out[1:]):
        function = re.search(r"Function (\S+):", line)
        resources = re.search(r"REG:(\d+) STACK:(\d+)", next_line)
        if function and resources:
            usage[function.group(1)] = (int(resources.group(1)), int(resources.group(2)))
    return usage


def instructions(library, is_kernel=lambda name: True):
    """{mangled kernel name: [(address, opcode with its modifiers, operands)]} of the kernels is_kernel picks."""
    kernels, kernel = {}, None
    for line in _cuobjdump("-sass", library):
        function = re.search(r"Function : (\S+)", line)
        if function:
            kernel = function.group(1) if is_kernel(function.group(1)) else None
            if kernel:
                kernels[kernel] = []
            continue
        instruction = re.search(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][\w.]*)\s*([^;]*);", line)
        if kernel and instruction:
            kernels[kernel].append((int(instruction.group(1), 16), instruction.group(2), instruction.group(3)))
    return kernels


def opcode_counts(code):
    """Counts by opcode with its modifiers ("STG.E.128") and by bare opcode ("STG")."""
    counts = Counter(opcode for _, opcode, _ in code)
    for opcode, count in list(counts.items()):
        if "." in opcode:
            counts[opcode.split(".")[0]] += count
    return counts


def loop_bodies(code):
    """The instructions of each loop, from a backward branch's target to the branch."""
    bodies = []
    for address, opcode, operands in code:
        target = re.search(r"0x([0-9a-f]+)", operands) if opcode == "BRA" else None
        if target and int(target.group(1), 16) < address:
            bodies.append([instruction for instruction in code if int(target.group(1), 16) <= instruction[0] <= address])
    return bodies


def main_loop(code):
    """The instructions of the innermost loop (a backward branch) spanning all multiply-adds, or None."""
    multiply = [address for address, opcode, _ in code if opcode.split(".")[0] in MULTIPLY_ADDS]
    if not multiply:
        return None
    spanning = [body for body in loop_bodies(code) if body[0][0] <= multiply[0] and body[-1][0] >= multiply[-1]]
    return min(spanning, key=len) if spanning else None


def copy_loops(code):
    """(instructions, vectors) of each loop (a backward branch) that issues cp.async copies and no
    multiply-add: a kernel's staging loops, unrolled as nvcc chose. A 16-byte vector is one LDGSTS
    that copies; one whose source may be zero-filled has a second, predicated the other way, that
    zero-fills (ignore-src: its last operand !PT) and is not counted. A loop's instructions over its
    vectors are what a vector's load costs."""
    loops = []
    for body in loop_bodies(code):
        vectors = sum(op.startswith("LDGSTS") and not args.rstrip().endswith("!PT") for _, op, args in body)
        if vectors and not any(op.split(".")[0] in MULTIPLY_ADDS for _, op, _ in body):
            loops.append((len(body), vectors))
    return loops


def multiply_part(code):
    """From the barrier, or the cp.async commit (LDGDEPBAR) of the loads a stage issues after its
    barrier, before the first multiply-add to the last one: what a stage multiplies, without its
    staging (the "multiply part" the kernel commits quote), or None."""
    multiply = [i for i, (_, opcode, _) in enumerate(code) if opcode.split(".")[0] in MULTIPLY_ADDS]
    if not multiply:
        return None
    starts = [i for i, (_, opcode, _) in enumerate(code[:multiply[0]]) if opcode.startswith(("BAR", "LDGDEPBAR"))]
    return code[starts[-1]:multiply[-1] + 1] if starts else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", default=".", help="regex on the mangled kernel names")
    parser.add_argument("--library", help="a library or object file with sm_90 code (default: the built "
                        "extension), e.g. one kernel file compiled by nvcc -c to compare with")
    args = parser.parse_args()
    if cuobjdump_path() is None:
        raise SystemExit("needs Triton's cuobjdump (pip install triton)")
    if args.library:
        library = args.library
    else:
        from stylegan_ops import _extension

        library = _extension._C.__file__
    usage = resource_usage(library)
    pattern = re.compile(args.kernels)
    for name, code in sorted(instructions(library, pattern.search).items()):
        counts = opcode_counts(code)
        loop = main_loop(code)
        registers, stack = usage.get(name, (None, None))
        print(name)
        part = multiply_part(code)
        print(f"  registers {registers}, stack {stack} B, {len(code)} instructions"
              + (f", main loop {len(loop)}" if loop else "") + (f", multiply part {len(part)}" if part else ""))
        print("  " + ", ".join(f"{opcode} {counts[opcode]}" for opcode in REPORTED if counts[opcode]))
        if loop:
            loop_counts = opcode_counts(loop)
            print("  main loop: " + ", ".join(f"{opcode} {loop_counts[opcode]}" for opcode in REPORTED
                                              if loop_counts[opcode]))
        copies = copy_loops(code)
        if copies:
            print("  cp.async loops: " + ", ".join(
                f"{length} instructions for {vectors} vector{'s' * (vectors > 1)} ({length / vectors:.0f} a vector)"
                for length, vectors in copies))


if __name__ == "__main__":
    main()
