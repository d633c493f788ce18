"""The CPU time of calling the native ops, with no compute to speak of: the public functions on
tiny CPU tensors against their library ops called directly, the pieces of Python between the
two (autocast, argument checks, backend resolution), and a generator forward with two channels
per layer. On the H100 runs a call of a small case was CPU-bound (noise_adain_lrelu forward at
(8, 512, 16, 16): 0.143 ms a call for 0.006 ms of kernel), and so was the whole generator
(256 px: 6.7 ms a forward for 2.6 ms of kernels); this measures what of such a call is ours.

    python benchmarks/call_cpu_cost.py

To compare two versions, run it with each on PYTHONPATH (one thread; the VM is noisy, so
alternate the runs).
"""

import sys

import torch

import stylegan_ops as so
from stylegan_ops import backends
from stylegan_ops.nn import Generator
from stylegan_ops.ops._autocast import autocast_region
from triton_launch_cpu_cost import best_us

NOISE_OP = sys.modules["stylegan_ops.ops.noise_adain_lrelu"]  # the module; the package exports the function


def main():
    torch.set_num_threads(1)
    if not so.build_info()["extension"]:
        sys.exit("the native backend is not built")
    x, noise = torch.randn(1, 4, 2, 2), torch.randn(1, 1, 2, 2)
    noise_weight, scale, shift = torch.randn(4), torch.randn(1, 4), torch.randn(1, 4)
    weight, bias = torch.randn(4, 4, 3, 3), torch.randn(4)
    noise_args = (x, noise, noise_weight, scale, shift)
    generator = Generator(z_dim=8, w_dim=8, resolution=32, channel_base=64, channel_max=2, backend="native").eval()
    z = torch.randn(1, 8)
    cases = {
        "noise_adain_lrelu public function": lambda: so.noise_adain_lrelu(*noise_args, backend="native"),
        "noise_adain_lrelu library op": lambda: torch.ops.stylegan_ops.noise_adain_lrelu(*noise_args, 1e-5, 0.2),
        "  autocast_region": lambda: autocast_region(*noise_args),
        "  argument checks": lambda: NOISE_OP._check_args(*noise_args, 1e-5, 0.2),
        "  backend resolution": lambda: backends.resolve_for("native", x, "noise_adain_lrelu",
                                                             NOISE_OP.IMPLEMENTATIONS),
        "upsample_conv2d public function": lambda: so.upsample_conv2d(x, weight, bias, backend="native"),
        "upsample_conv2d library op": lambda: torch.ops.stylegan_ops.upsample_conv2d(x, weight, bias),
        "generator forward, 32 px, 2 channels, const noise": lambda: generator(z, noise_mode="const"),
        "generator forward, 32 px, 2 channels, random noise": lambda: generator(z, noise_mode="random"),
    }
    print(f"torch {torch.__version__}, one thread, no grad; microseconds per call:")
    with torch.no_grad():
        for label, call in cases.items():
            print(f"  {label}: {best_us(call, calls=100 if 'generator' in label else 300):.1f}")


if __name__ == "__main__":
    main()
