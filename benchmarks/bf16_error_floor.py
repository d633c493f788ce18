"""How far a bfloat16 generator training step lies from float64, per backend: the floor under the
benchmark CLI's ``max_rel_err`` for the generator, which compares each backend's bfloat16 step with
eager's bfloat16 step (0.29 to 0.31 on the H100 run of 2026-11-27 at 217f692, 256 px, for every
backend, torch.compile's included). Prints, per backend, the relative L2 error of the image and of
all parameter gradients (one vector) against float64 eager, in bfloat16 and in float32, and native
against eager in bfloat16. CPU only (the native backend's CPU kernels; eager's CPU ops).

    python benchmarks/bf16_error_floor.py [--resolution 32]
"""

import argparse
import copy

import torch

import stylegan_ops as so
from stylegan_ops.bench import _rel_l2 as rel_l2  # the CLI's own measure of max_rel_err


def training_step(model, z, dtype):
    """(image, all parameter gradients as one vector) of one forward+backward in ``dtype``, as float64."""
    model = copy.deepcopy(model).to(dtype)
    img = model(z.to(dtype), noise_mode="const")
    grads = torch.autograd.grad(img, list(model.parameters()), torch.ones_like(img))
    return img.double(), torch.cat([g.double().flatten() for g in grads])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    G = so.nn.Generator(resolution=args.resolution, z_dim=64, w_dim=64, channel_base=32 * args.resolution,
                        channel_max=64, backend="eager").eval()
    z = torch.randn(4, 64)
    ref_img, ref_grads = training_step(G, z, torch.float64)
    steps = {}
    for backend in ("eager", "native"):
        G.backend = backend
        for dtype in (torch.bfloat16, torch.float32):
            steps[backend, dtype] = training_step(G, z, dtype)
            img, grads = steps[backend, dtype]
            name = str(dtype).removeprefix("torch.")
            print(f"{backend:6} {name:8} vs float64 eager: image {rel_l2(img, ref_img):.1e}, "
                  f"gradients {rel_l2(grads, ref_grads):.1e}")
    (n_img, n_grads), (e_img, e_grads) = steps["native", torch.bfloat16], steps["eager", torch.bfloat16]
    print(f"native bfloat16 vs eager bfloat16: image {rel_l2(n_img, e_img):.1e}, "
          f"gradients {rel_l2(n_grads, e_grads):.1e}")


if __name__ == "__main__":
    main()
