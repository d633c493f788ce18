"""The modules are the seed's: state_dicts move both ways with strict=True and outputs agree."""

import pytest
import torch

import stylegan_ops as so
from conftest import cpu_backend_or_skip
from reference import SeedAdaIN, SeedMappingNetwork, SeedNoiseInjection, SeedSynthesisBlock, rel_l2

W_DIM = 16


def _pairs():
    return [
        (lambda: SeedMappingNetwork(8, W_DIM, 3), lambda: so.nn.MappingNetwork(8, W_DIM, 3)),
        (lambda: SeedAdaIN(6, W_DIM), lambda: so.nn.AdaIN(6, W_DIM)),
        (lambda: SeedNoiseInjection(6), lambda: so.nn.NoiseInjection(6)),
        (lambda: SeedSynthesisBlock(4, 6, W_DIM, True), lambda: so.nn.SynthesisBlock(4, 6, W_DIM, True)),
        (lambda: SeedSynthesisBlock(4, 6, W_DIM, False), lambda: so.nn.SynthesisBlock(4, 6, W_DIM, False)),
    ]


def _randomize(module):
    # Non-zero noise weights and non-default values everywhere, so a swapped key would show.
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module


@pytest.mark.parametrize("make_seed,make_ours", _pairs())
def test_state_dict_moves_both_ways(make_seed, make_ours):
    seed, ours = _randomize(make_seed()), _randomize(make_ours())
    assert list(seed.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(seed.state_dict(), strict=True)
    for key, value in seed.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    seed2 = make_seed()
    seed2.load_state_dict(_randomize(make_ours()).state_dict(), strict=True)


def _same_parameters(seed, ours):
    seed = _randomize(seed).double()
    ours = ours.double()
    ours.load_state_dict(seed.state_dict(), strict=True)
    return seed, ours


def test_mapping_network_matches_seed():
    seed, ours = _same_parameters(SeedMappingNetwork(8, W_DIM, 3), so.nn.MappingNetwork(8, W_DIM, 3))
    z = torch.randn(5, 8, dtype=torch.float64)
    assert rel_l2(ours(z), seed(z)) < 1e-12


def test_mapping_network_normalize_z_is_pixel_norm():
    ours = _randomize(so.nn.MappingNetwork(8, W_DIM, 2, normalize_z=True)).double()
    z = torch.randn(5, 8, dtype=torch.float64)
    unit = z / z.square().mean(dim=1, keepdim=True).sqrt()
    assert rel_l2(ours(3.0 * z), ours.network(unit)) < 1e-6


def test_adain_matches_seed():
    seed, ours = _same_parameters(SeedAdaIN(6, W_DIM), so.nn.AdaIN(6, W_DIM))
    x, w = torch.randn(3, 6, 5, 7, dtype=torch.float64), torch.randn(3, W_DIM, dtype=torch.float64)
    assert rel_l2(ours(x, w), seed(x, w)) < 1e-12


# The seed's AdaIN reshapes its styles with view(-1, C, 1, 1): w's leading dimensions flatten, and
# one w vector broadcasts over the batch.
@pytest.mark.parametrize("w_shape", [(3, W_DIM), (1, W_DIM), (3, 1, W_DIM)])
def test_adain_takes_w_shapes_as_the_seed(w_shape):
    seed, ours = _same_parameters(SeedAdaIN(6, W_DIM), so.nn.AdaIN(6, W_DIM))
    x, w = torch.randn(3, 6, 5, 7, dtype=torch.float64), torch.randn(w_shape, dtype=torch.float64)
    assert rel_l2(ours(x, w), seed(x, w)) < 1e-12


def test_noise_injection_matches_seed():
    seed, ours = _same_parameters(SeedNoiseInjection(6), so.nn.NoiseInjection(6))
    x, noise = torch.randn(3, 6, 5, 7, dtype=torch.float64), torch.randn(3, 1, 5, 7, dtype=torch.float64)
    assert rel_l2(ours(x, noise), seed(x, noise)) < 1e-15
    torch.manual_seed(1)
    drawn_seed = seed(x)
    torch.manual_seed(1)
    assert torch.equal(ours(x), drawn_seed)  # noise=None draws the same N(0, 1) noise


@pytest.mark.parametrize("use_upsample", [True, False])
def test_synthesis_block_matches_seed(use_upsample):
    seed, ours = _same_parameters(
        SeedSynthesisBlock(4, 6, W_DIM, use_upsample), so.nn.SynthesisBlock(4, 6, W_DIM, use_upsample, "eager")
    )
    x, w = torch.randn(2, 4, 5, 6, dtype=torch.float64), torch.randn(2, W_DIM, dtype=torch.float64)
    side = 2 if use_upsample else 1
    noise = torch.randn(2, 1, 5 * side, 6 * side, dtype=torch.float64)
    out = ours(x, w, noise)
    assert out.shape == (2, 6, 5 * side, 6 * side)
    assert rel_l2(out, seed(x, w, noise)) < 1e-12
    torch.manual_seed(3)
    drawn_seed = seed(x, w)
    torch.manual_seed(3)
    assert rel_l2(ours(x, w), drawn_seed) < 1e-12  # noise=None: the same random draw as the seed


def _check_block_against_seed(backend, x, w, noise, wrt):
    """Our SynthesisBlock (upsampling, on ``backend``) against the seed's with the same parameters:
    the output, and the gradients of input ``wrt`` ("w" or "noise") and of every parameter."""
    seed, ours = _same_parameters(
        SeedSynthesisBlock(4, 6, W_DIM, True), so.nn.SynthesisBlock(4, 6, W_DIM, True, backend)
    )
    inputs = dict(w=w, noise=noise)
    grad_y = torch.randn(x.shape[0], 6, 2 * x.shape[2], 2 * x.shape[3], dtype=x.dtype)
    results = []
    for block in (ours, seed):
        leaf = inputs[wrt].clone().requires_grad_()
        y = block(x, **{**inputs, wrt: leaf})
        results.append((y, torch.autograd.grad(y, [leaf, *block.parameters()], grad_y)))
    (out, grads), (ref, grads_ref) = results
    assert rel_l2(out, ref) < 1e-12
    # Absolute as well: instance norm removes per-channel constants, so the conv bias's gradient and
    # that of (1, C, 1, 1) noise are 0 up to rounding.
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


# The seed adds weight * noise with broadcasting: one map for the batch, a map without batch or
# channel dims, or noise per channel all work there and must here, on every backend (the fused op
# takes one map per sample: a broadcast one is expanded, per-channel noise is added before it).
@pytest.mark.parametrize("backend", ["eager", "native"])
@pytest.mark.parametrize("noise_shape", [(2, 1, 10, 12), (1, 1, 10, 12), (10, 12), (2, 6, 10, 12), (1, 6, 1, 1)])
def test_synthesis_block_broadcasts_noise_as_the_seed(backend, noise_shape):
    cpu_backend_or_skip(backend, "noise_adain_lrelu")
    x, w = torch.randn(2, 4, 5, 6, dtype=torch.float64), torch.randn(2, W_DIM, dtype=torch.float64)
    _check_block_against_seed(backend, x, w, torch.randn(noise_shape, dtype=torch.float64), wrt="noise")


# The seed's AdaIN flattens w's leading dimensions and broadcasts one w over the batch; here one w
# for the whole batch reaches the fused op as expanded (stride-0) styles.
@pytest.mark.parametrize("backend", ["eager", "native", "triton"])
@pytest.mark.parametrize("w_shape", [(2, W_DIM), (1, W_DIM), (2, 1, W_DIM), (1, 1, W_DIM)])
def test_synthesis_block_takes_w_shapes_as_the_seed(backend, w_shape):
    cpu_backend_or_skip(backend, "noise_adain_lrelu")
    x, noise = torch.randn(2, 4, 5, 6, dtype=torch.float64), torch.randn(2, 1, 10, 12, dtype=torch.float64)
    _check_block_against_seed(backend, x, torch.randn(w_shape, dtype=torch.float64), noise, wrt="w")


def test_synthesis_block_refuses_w_for_another_batch():
    block = so.nn.SynthesisBlock(4, 6, W_DIM, True, "eager")
    with pytest.raises(ValueError, match=r"SynthesisBlock: w of shape \(3, 16\) holds 3 w vectors for a batch of 2"):
        block(torch.randn(2, 4, 5, 6), torch.randn(3, W_DIM))


@pytest.mark.parametrize("noise_shape,message", [
    ((3, 1, 10, 12), r"noise of shape \(3, 1, 10, 12\) does not broadcast against the conv output \(2, 6, 10, 12\)"),
    ((2, 2, 10, 12), r"noise of shape \(2, 2, 10, 12\) does not broadcast"),
    ((1, 2, 1, 10, 12), r"noise of shape \(1, 2, 1, 10, 12\) would broadcast the conv output \(2, 6, 10, 12\) to "
                        r"\(1, 2, 6, 10, 12\)"),
])
def test_synthesis_block_refuses_noise_that_does_not_broadcast(noise_shape, message):
    block = so.nn.SynthesisBlock(4, 6, W_DIM, True, "eager")
    with pytest.raises(ValueError, match="SynthesisBlock: " + message):
        block(torch.randn(2, 4, 5, 6), torch.randn(2, W_DIM), torch.randn(noise_shape))


def test_synthesis_block_without_noise_equals_zero_noise():
    block = _randomize(so.nn.SynthesisBlock(4, 6, W_DIM, False, "eager")).double()
    x, w = torch.randn(2, 4, 5, 6, dtype=torch.float64), torch.randn(2, W_DIM, dtype=torch.float64)
    zeros = torch.zeros(2, 1, 5, 6, dtype=torch.float64)
    assert rel_l2(block(x, w, randomize_noise=False), block(x, w, zeros)) < 1e-15


def test_synthesis_block_backend_changes_no_parameters():
    block = so.nn.SynthesisBlock(4, 6, W_DIM)
    keys = list(block.state_dict())
    block.backend = "eager"
    assert list(block.state_dict()) == keys
