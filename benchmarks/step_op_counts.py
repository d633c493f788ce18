"""The operators a generator training step (forward and backward) dispatches, per backend, counted
on the CPU: no GPU needed. On the H100 runs the native generator's training step was CPU-bound
(13.9 ms a step for 6.6 ms of GPU work at 256 px, batch 8), its time the CPU's cost of launching
operators, so their number is a measure of the host's work that a CPU can take.

The generator has the default one's width runs (512 channels up to 32x32, then 256, 128, 64 to
256 px) at 1/64 of its channels. Counted with a TorchDispatchMode, above the device's kernels: the
stylegan_ops ops (one to three kernels each on CUDA), and the ATen ops other than views and
metadata, each at least one kernel on CUDA (a slice_backward two: a zero fill and a copy). What
differs by device: on the CPU rms_norm shows as its five pointwise ops (one fused kernel on CUDA),
and cuDNN's separate bias add inside a convolution does not show on either.

    python benchmarks/step_op_counts.py [--resolution 256] [--backends eager,native,triton]
"""

import argparse
import collections
import sys
from pathlib import Path

import torch

import stylegan_ops as so

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import OpCalls  # noqa: E402 - the tests' recorder of operator calls

# ATen ops that make no kernel: views, metadata and aliasing.
VIEWS = {"view", "_unsafe_view", "_reshape_alias", "reshape", "expand", "slice", "select", "narrow", "t",
         "transpose", "permute", "unsqueeze", "squeeze", "unbind", "split", "split_with_sizes", "as_strided",
         "alias", "detach"}


def step_counts(backend, resolution, batch=2):
    torch.manual_seed(0)
    G = so.nn.Generator(resolution=resolution, z_dim=8, w_dim=8, channel_base=16384 // 64, channel_max=8,
                        backend=backend, channels_last=True).eval()
    z = torch.randn(batch, 8)
    G(z, noise_mode="const")  # first calls (Triton's compiles) outside the count
    with OpCalls() as recorded:
        img = G(z, noise_mode="const")
        torch.autograd.grad(img, list(G.parameters()), torch.ones_like(img))
    names = ((func.namespace, func._schema.name.split("::")[-1]) for func, _, _ in recorded.calls)
    return collections.Counter(f"{namespace}.{name}" for namespace, name in names
                               if namespace != "aten" or name not in VIEWS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--backends", default="eager,native")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        ops = step_counts(backend, args.resolution)
        ours = sum(n for op, n in ops.items() if op.startswith("stylegan_ops."))
        print(f"{backend}: {sum(ops.values()) - ours} ATen ops, {ours} stylegan_ops ops a training step at "
              f"{args.resolution} px")
        for op, n in ops.most_common():
            print(f"  {n:4d}  {op}")


if __name__ == "__main__":
    main()
