"""Markdown table of a pytest-benchmark JSON from test_bench_*.py: median ms per backend, speedup vs eager.

    python benchmarks/results_table.py benchmarks/results/<file>.json
"""

import json
import sys
from collections import defaultdict


def table(path):
    with open(path) as f:
        data = json.load(f)
    rows = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        key = (bench["name"].split("[")[0].removeprefix("test_"), tuple(info["shape"]), info["dtype"], info["direction"])
        rows[key][info["backend"]] = bench["stats"]["median"] * 1e3
    backends = ["eager", "compile", "four_conv", "native", "triton"]
    present = [b for b in backends if any(b in r for r in rows.values())]
    first = data["benchmarks"][0]["extra_info"]
    lines = [
        f"Device: {first['device']}; torch {first['torch']}, Triton {first['triton']}; {data['datetime'][:10]}",
        "",
        "| op | shape | dtype | direction | " + " | ".join(f"{b} ms" for b in present) + " | native vs eager |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in present) + " | --- |",
    ]
    for (op, shape, dtype, direction), medians in sorted(rows.items()):
        cells = [f"{medians[b]:.3f}" if b in medians else "" for b in present]
        speedup = f"{medians['eager'] / medians['native']:.2f}x" if "native" in medians else ""
        lines.append(f"| {op} | {shape} | {dtype.removeprefix('torch.')} | {direction} | " + " | ".join(cells) + f" | {speedup} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sys.argv[1]))
