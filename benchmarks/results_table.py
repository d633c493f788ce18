"""Markdown tables of a ``python -m stylegan_ops.bench --json`` result: median ms per backend and
speedups, then the geometric mean of each backend's speedup over eager across an op's shapes (the
form the issues' goals take), on CUDA the same per-call times with the CPU ahead of the GPU
(``gpu_ms``: what the kernels take), then the memory of fwd+bwd: the bytes autograd saves for
backward (every device) and the peak (CUDA), with each backend's ratio to eager.

    python benchmarks/results_table.py benchmarks/results/<file>.json
"""

import json
import math
import sys
from collections import defaultdict

from stylegan_ops.bench import BACKENDS, GRAPHED


def _bases(backend):
    """What a backend's speedup is taken over: eager and torch.compile, and for a fused backend in
    a CUDA graph also eager in one (which the graph speeds up as much, where the CPU bound eager)."""
    graphed_fused = backend in GRAPHED and backend != "eager+graph"
    return ("eager", "compile", "eager+graph") if graphed_fused else ("eager", "compile")


def table(path):
    with open(path) as f:
        result = json.load(f)
    rows = defaultdict(dict)
    for r in result["records"]:
        rows[(r["op"], tuple(r["shape"]), r["dtype"], r["direction"])][r["backend"]] = r
    present = [b for b in BACKENDS if any(b in by_backend for by_backend in rows.values())]
    fast = [b for b in present if b not in ("eager", "compile")]
    lines = [
        f"{result['device']}; torch {result['torch']}, Triton {result['triton']}, CUDA {result['cuda']}; "
        f"{result['date'][:10]}{' (--quick)' if result.get('quick') else ''}",
        "",
        "| op | shape | dtype | direction | " + " | ".join(f"{b} ms" for b in present)
        + "".join(f" | {b} vs {base}" for b in fast for base in _bases(b)) + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in present)
        + " | ---" * sum(len(_bases(b)) for b in fast) + " |",
    ]
    for (op, shape, dtype, direction), by_backend in rows.items():
        cells = [f"{by_backend[b]['median_ms']:.3f}" if b in by_backend else "" for b in present]
        for b in fast:
            for base in _bases(b):
                ok = b in by_backend and base in by_backend
                cells.append(f"{by_backend[base]['median_ms'] / by_backend[b]['median_ms']:.2f}x" if ok else "")
        lines.append(f"| {op} | {shape} | {dtype} | {direction} | " + " | ".join(cells) + " |")
    lines += ["", "| op | dtype | direction | shapes | " + " | ".join(f"{b} vs eager, geomean" for b in fast) + " |",
              "| --- | --- | --- | --- | " + " | ".join("---" for _ in fast) + " |"]
    groups = defaultdict(list)
    for (op, shape, dtype, direction), by_backend in rows.items():
        groups[(op, dtype, direction)].append(by_backend)
    for (op, dtype, direction), cases in groups.items():
        cells = []
        for b in fast:
            speedups = [c["eager"]["median_ms"] / c[b]["median_ms"] for c in cases if b in c and "eager" in c]
            partial = f" ({len(speedups)} of {len(cases)} shapes)" if 0 < len(speedups) < len(cases) else ""
            cells.append(f"{math.exp(sum(map(math.log, speedups)) / len(speedups)):.2f}x{partial}" if speedups else "")
        lines.append(f"| {op} | {dtype} | {direction} | {len(cases)} | " + " | ".join(cells) + " |")
    lines += gpu_table(rows, present, fast)
    for key, what in (("saved_bytes", "saved for backward"), ("peak_mem_bytes", "peak")):
        lines += memory_table(rows, present, key, what)
    failures = result.get("failures", [])
    if failures:
        lines += ["", "Failed, so not timed:"]
        lines += [f"- {f['op']} {tuple(f['shape'])} {f['dtype']} {f['direction']} {f['backend']}: {f['error']}"
                  for f in failures]
    return "\n".join(lines)


def gpu_table(rows, present, fast):
    """Per-call ms with the CPU ahead of the GPU (CUDA records only) and the fused backends' speedups."""
    rows = {k: by_backend for k, by_backend in rows.items()
            if any(r.get("gpu_ms") is not None for r in by_backend.values())}
    if not rows:
        return []
    lines = ["", "| op | shape | dtype | direction | " + " | ".join(f"{b} GPU ms" for b in present)
             + "".join(f" | {b} vs eager" for b in fast) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in present) + " | ---" * len(fast) + " |"]
    for (op, shape, dtype, direction), by_backend in rows.items():
        ms = {b: by_backend.get(b, {}).get("gpu_ms") for b in present}
        cells = [f"{ms[b]:.3f}" if ms[b] is not None else "" for b in present]
        cells += [f"{ms['eager'] / ms[b]:.2f}x" if ms.get("eager") and ms[b] else "" for b in fast]
        lines.append(f"| {op} | {shape} | {dtype} | {direction} | " + " | ".join(cells) + " |")
    return lines


def memory_table(rows, present, key, what):
    """fwd+bwd rows with ``key`` measured for eager: MiB per backend and its ratio to eager's."""
    rows = {k: by_backend for k, by_backend in rows.items()
            if k[3] == "fwd+bwd" and by_backend.get("eager", {}).get(key)}
    if not rows:
        return []
    lines = ["", "| op | shape | dtype | " + " | ".join(f"{b} MiB {what}" for b in present) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in present) + " |"]
    for (op, shape, dtype, _), by_backend in rows.items():
        eager = by_backend["eager"][key]
        cells = []
        for b in present:
            value = by_backend.get(b, {}).get(key)
            ratio = f" ({value / eager:.2f}x)" if value is not None and b != "eager" else ""
            cells.append(f"{value / 2**20:.1f}{ratio}" if value is not None else "")
        lines.append(f"| {op} | {shape} | {dtype} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    print(table(sys.argv[1]))
