"""The CUDA kernels of upsample_conv2d, run on the CPU.

csrc/cuda/upsample_conv2d_kernel.cu is compiled with the host compiler against
tests/cuda_emulation/cuda_emulation.h (a thread block as CPU threads) and checked against the
plain reference: every tile, halo, tap, channel block, pixel split and layout index of the
forward, dx and d weight kernels runs here, without a GPU. float16/bfloat16 run the same tiles
(BK = 16, the WMMA k-step) through the CUDA-core fragment code; the tensor-core (WMMA)
fragment calls themselves are the one part only a GPU can check (tests/test_upsample_conv2d.py,
GPU-marked).
"""

import pathlib

import pytest
import torch
import torch.utils.cpp_extension

from reference import output_and_grads, rel_l2, upsample_conv2d_reference

HERE = pathlib.Path(__file__).parent / "cuda_emulation"
NAMES = ("x", "weight", "bias")
# dtype: (reference dtype, forward tolerance, gradient tolerance) from DESIGN.md §3.
TOLERANCES = {
    torch.float64: (torch.float64, 1e-12, 1e-12),
    torch.float32: (torch.float64, 1e-5, 1e-4),
    torch.float16: (torch.float32, 2e-3, 5e-3),
    torch.bfloat16: (torch.float32, 1e-2, 2e-2),
}
# (N, C_in, C_out, H, W): partial 8x8 tiles and 16-wide grad-weight tiles, two channel blocks of
# 64 on either side with a partial one, several K stages with a partial last one, a 1x1 input.
SHAPES = [(2, 20, 70, 9, 17), (1, 70, 20, 3, 20), (1, 1, 1, 1, 1)]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    torch.utils.cpp_extension.load(
        name="upsample_conv2d_emulated",
        sources=[str(HERE / "upsample_conv2d_emulated.cpp")],
        extra_cflags=["-O2", "-std=c++20", "-DSTYLEGAN_OPS_EMULATE_CUDA"],
        extra_ldflags=["-pthread"],
        build_directory=str(tmp_path_factory.mktemp("upsample_conv2d_emulated")),
        is_python_module=False,
    )
    return torch.ops.stylegan_ops_emulated


class EmulatedOp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ops, x, weight, bias):
        ctx.ops = ops
        ctx.save_for_backward(x, weight)
        return ops.upsample_conv2d(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_y):
        x, weight = ctx.saved_tensors
        return None, *ctx.ops.upsample_conv2d_backward(grad_y, x, weight)


def check_against_reference(ops, x, weight, bias, grad_y):
    ref_dtype, fwd_tol, grad_tol = TOLERANCES[x.dtype]
    y, grads = output_and_grads(lambda *a: EmulatedOp.apply(ops, *a), (x, weight, bias), NAMES, NAMES, grad_y)
    y_ref, grads_ref = output_and_grads(
        upsample_conv2d_reference, [t.to(ref_dtype) for t in (x, weight, bias)], NAMES, NAMES, grad_y.to(ref_dtype)
    )
    assert y.dtype == x.dtype and rel_l2(y, y_ref) < fwd_tol
    for name, g, r in zip(NAMES, grads, grads_ref):
        assert g.dtype == x.dtype and rel_l2(g, r) < grad_tol, name
    return y, grads


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_cuda_kernels_match_reference(emulated, dtype, shape, memory_format):
    n, c_in, c_out, h, w = shape
    x = torch.randn(n, c_in, h, w, dtype=dtype).contiguous(memory_format=memory_format)
    weight, bias = torch.randn(c_out, c_in, 3, 3, dtype=dtype), torch.randn(c_out, dtype=dtype)
    grad_y = torch.randn(n, c_out, 2 * h, 2 * w, dtype=dtype).contiguous(memory_format=memory_format)
    y, (grad_x, _, _) = check_against_reference(emulated, x, weight, bias, grad_y)
    if c_in > 1 and c_out > 1:
        assert y.is_contiguous(memory_format=memory_format)
        assert grad_x.is_contiguous(memory_format=memory_format)


def test_cuda_kernels_strided_inputs_without_bias(emulated):
    """A sliced x (no layout the kernels special-case) and a stride-0 grad_y, as from y.sum()."""
    x = torch.randn(2, 24, 11, 19, dtype=torch.float64)[:, ::2, 1:, ::2]
    weight = torch.randn(66, 12, 3, 3, dtype=torch.float64)
    y = emulated.upsample_conv2d(x, weight, None)
    assert rel_l2(y, upsample_conv2d_reference(x, weight)) < 1e-12
    grad_y = torch.ones(()).double().expand(y.shape)
    got = emulated.upsample_conv2d_backward(grad_y, x, weight)
    xr, wr = x.clone().requires_grad_(), weight.clone().requires_grad_()
    want = torch.autograd.grad(upsample_conv2d_reference(xr, wr).sum(), (xr, wr))
    assert rel_l2(got[0], want[0]) < 1e-12 and rel_l2(got[1], want[1]) < 1e-12
    assert rel_l2(got[2], torch.full((66,), float(y[0, 0].numel() * 2), dtype=torch.float64)) == 0

