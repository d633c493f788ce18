"""Measured ceilings of the device: copy bandwidth (GB/s, read + write) and bf16 matmul (TFLOP/s)."""

import json
import sys

import torch


def _median_ms(fn, reps=20):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main(path):
    src = torch.empty(1 << 28, device="cuda", dtype=torch.float32)  # 1 GiB
    dst = torch.empty_like(src)
    copy_ms = _median_ms(lambda: dst.copy_(src))
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = _median_ms(lambda: a @ b)
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "copy_gbps": 2 * src.numel() * 4 / copy_ms / 1e6,
        "bf16_matmul_tflops": 2 * 8192**3 / mm_ms / 1e9,
    }
    print(json.dumps(result, indent=2))
    with open(path, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
