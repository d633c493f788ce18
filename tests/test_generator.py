"""Generator: shapes at every resolution, channel schedule, truncation, style mixing, noise modes."""

import collections
import io

import pytest
import torch

import stylegan_ops as so
from reference import OpCalls, rel_l2

SMALL = dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32, backend="eager")


def small_generator(resolution=16, **kwargs):
    return so.nn.Generator(resolution=resolution, **{**SMALL, **kwargs}).double()


@pytest.mark.parametrize("resolution", [4, 8, 16, 32, 64, 128, 256])
def test_shapes_at_every_resolution(resolution):
    G = small_generator(resolution, img_channels=3)
    assert G.num_ws == 2 * (resolution.bit_length() - 2)
    with torch.no_grad():
        img = G(torch.randn(2, 32, dtype=torch.float64))
    assert img.shape == (2, 3, resolution, resolution)
    assert torch.isfinite(img).all()


def test_full_size_1024():
    G = so.nn.Generator(resolution=1024, backend="eager")
    assert G.num_ws == 18
    assert [b.conv.out_channels for b in G.blocks[::2]] == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert [b.use_upsample for b in G.blocks] == [False, False] + [True, False] * 8
    with torch.no_grad():
        img = G(torch.randn(1, 512), noise_mode="const")
    assert img.shape == (1, 3, 1024, 1024)
    assert torch.isfinite(img).all()


def test_psi_zero_maps_every_z_to_the_average_w_image():
    G = small_generator()
    G.train()
    G.map(torch.randn(16, 32, dtype=torch.float64))  # moves w_avg away from zero
    G.eval()
    assert G.w_avg.abs().sum() > 0
    with torch.no_grad():
        a = G(torch.randn(3, 32, dtype=torch.float64), truncation_psi=0.0, noise_mode="const")
        b = G(torch.randn(3, 32, dtype=torch.float64), truncation_psi=0.0, noise_mode="const")
        avg = G.synthesize(G.w_avg.expand(3, G.num_ws, -1), noise_mode="const")
    assert rel_l2(a, avg) < 1e-12 and rel_l2(b, avg) < 1e-12


def test_truncation_interpolates_toward_w_avg_before_cutoff():
    G = small_generator()
    G.w_avg.normal_()
    z = torch.randn(2, 32, dtype=torch.float64)
    w = G.mapping(z)
    ws = G.map(z, truncation_psi=0.5, truncation_cutoff=3)
    assert rel_l2(ws[:, 0], G.w_avg + 0.5 * (w - G.w_avg)) < 1e-12
    assert rel_l2(ws[:, 3:], w.unsqueeze(1).expand(-1, G.num_ws - 3, -1)) < 1e-15


def test_w_avg_tracks_mean_w_in_training_mode_only():
    G = small_generator()
    z = torch.randn(8, 32, dtype=torch.float64)
    G.eval()
    G.map(z)
    assert G.w_avg.abs().sum() == 0
    G.train()
    G.map(z)
    expected = (1 - 0.995) * G.mapping(z).mean(dim=0)
    assert rel_l2(G.w_avg, expected) < 1e-12


def test_mixing_with_the_same_latent_changes_nothing():
    G = small_generator()
    z = torch.randn(2, 32, dtype=torch.float64)
    with torch.no_grad():
        plain = G(z, noise_mode="const")
        mixed = G(z, mix_z=z.clone(), crossover=3, noise_mode="const")
    assert rel_l2(mixed, plain) < 1e-15


def test_mixing_takes_later_ws_from_the_second_latent():
    G = small_generator()
    z, z2 = torch.randn(2, 32, dtype=torch.float64), torch.randn(2, 32, dtype=torch.float64)
    ws = G.map(z, mix_z=z2, crossover=2)
    assert torch.equal(ws[:, :2], G.mapping(z).unsqueeze(1).expand(-1, 2, -1))
    assert torch.equal(ws[:, 2:], G.mapping(z2).unsqueeze(1).expand(-1, G.num_ws - 2, -1))
    with torch.no_grad():
        assert rel_l2(G(z, mix_z=z2, crossover=2, noise_mode="const"), G(z, noise_mode="const")) > 1e-3


def test_noise_modes():
    G = small_generator()
    for block in G.blocks:  # the noise weights start at zero; make noise visible
        torch.nn.init.constant_(block.noise_injection.weight, 0.5)
    z = torch.randn(2, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(G(z, noise_mode="const"), G(z, noise_mode="const"))
        assert torch.equal(G(z, noise_mode="none"), G(z, noise_mode="none"))
        assert rel_l2(G(z, noise_mode="random"), G(z, noise_mode="random")) > 1e-3
        assert rel_l2(G(z, noise_mode="const"), G(z, noise_mode="none")) > 1e-3


def test_random_noise_is_one_draw_and_styles_one_concatenation_each():
    """Kernels launched per forward: every block's noise map comes from one randn call, every block's
    style weights and biases from one torch.cat each (so on a GPU a forward launches 13 fewer
    kernels for noise and two per further run of one width for styles, at 256 px)."""
    G = small_generator(resolution=32)  # widths 32, 32, 32, 32, 16, 16, 8, 8: three runs
    z = torch.randn(2, 32, dtype=torch.float64)
    with torch.no_grad(), OpCalls() as ops:
        G(z)
    counts = collections.Counter(func for func, _, _ in ops.calls)
    assert counts[torch.ops.aten.randn.default] == 1 and counts[torch.ops.aten.cat.default] == 2
    draws = G._noise_maps(torch.zeros(3, G.num_ws, 32, dtype=torch.float64), "random")
    assert [tuple(d.shape) for d in draws] == [(3, 1, r, r) for r in G.block_resolutions]
    assert all(not torch.equal(a[:, :, :4, :4], b[:, :, :4, :4]) for a, b in zip(draws, draws[1:]))


@pytest.mark.parametrize("backend", ["eager", "native"])  # native: the conv biases join the biases' split
def test_styles_backward_concatenates_where_slices_would_fill_zeros(backend):
    """The styles' backward: one concatenation for each split (the weights', the biases', the ws')
    and one stack a run, not a zero tensor of the whole and a copy for every slice, added up by
    autograd (on a GPU about 50 more kernels a training step at 256 px)."""
    G = small_generator(resolution=32, backend=backend)  # widths 32, 32, 32, 32, 16, 16, 8, 8: three runs
    ws = torch.randn(2, G.num_ws, 32, dtype=torch.float64, requires_grad=True)
    styles = [t for pair in G._styles(ws) for t in pair]
    with OpCalls() as ops:
        torch.autograd.grad(styles, [ws, *G.parameters()], [torch.ones_like(t) for t in styles], allow_unused=True)
    counts = collections.Counter(func for func, _, _ in ops.calls)
    assert counts[torch.ops.aten.slice_backward.default] == 0 and counts[torch.ops.aten.add.Tensor] == 0
    assert counts[torch.ops.aten.cat.default] == 3 and counts[torch.ops.aten.stack.default] == 3


def test_synthesis_equals_each_block_fed_its_own_w():
    # The generator computes all blocks' styles together, a batched GEMM per run of one width
    # (here widths 32, 32, 32, 32, 16, 16, 8, 8); each block must get exactly its own affine of its w.
    G = small_generator(resolution=32)
    ws = torch.randn(2, G.num_ws, 32, dtype=torch.float64)
    x = G.const.unsqueeze(0).expand(2, -1, -1, -1)
    for i, block in enumerate(G.blocks):
        x = block(x, ws[:, i], getattr(G, f"noise_const_{i}"))
    assert rel_l2(G.synthesize(ws, noise_mode="const"), G.to_rgb(x)) < 1e-12
    assert all(t.is_contiguous() for styles in G._styles(ws) for t in styles)  # else every op copies them


def test_backend_switch_keeps_state_dict_keys():
    G = small_generator(backend="auto")
    keys = list(G.state_dict())
    G.backend = "eager"
    assert all(block.backend == "eager" for block in G.blocks)
    assert list(G.state_dict()) == keys


# StyleGAN code bases pickle whole networks; torch.save pickles with protocol 2, under which a
# torch.memory_format attribute fails ("cannot pickle 'module' object").
@pytest.mark.parametrize("channels_last", [False, True])
def test_whole_model_survives_torch_save(channels_last):
    G = small_generator(channels_last=channels_last)
    buffer = io.BytesIO()
    torch.save(G, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    z = torch.randn(3, 32, dtype=torch.float64)
    assert torch.equal(loaded(z, noise_mode="const"), G(z, noise_mode="const"))


def test_deferred_initialisation_on_meta():
    # Large models are built on the meta device, then materialised where they will run.
    with torch.device("meta"):
        G = so.nn.Generator(resolution=16, **SMALL)
    assert G(torch.empty(2, 32, device="meta"), noise_mode="const").shape == (2, 3, 16, 16)
    G.to_empty(device="cpu")
    assert all(not t.is_meta for t in G.state_dict().values())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(resolution=48), "resolution"),
        (dict(resolution=2), "resolution"),
        (dict(resolution=2048), "resolution"),
        (dict(resolution=16.0), "resolution"),
        (dict(z_dim=0), "z_dim"),
        (dict(channel_max=-1), "channel_max"),
        (dict(w_avg_beta=1.5), "w_avg_beta"),
        (dict(resolution=1024, channel_base=512), "channel_base"),
    ],
)
def test_bad_configuration_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        so.nn.Generator(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda G, z: G(z, noise_mode="sometimes"), "noise_mode"),
        (lambda G, z: G(z, mix_z=z), "crossover"),
        (lambda G, z: G(z, mix_z=z, crossover=99), "crossover"),
        (lambda G, z: G(z, truncation_cutoff=99), "truncation_cutoff"),
        (lambda G, z: G(z, truncation_psi=0.5, truncation_cutoff=2.5), "truncation_cutoff must be None or an int"),
        (lambda G, z: G(z, truncation_psi=0.5, truncation_cutoff=True), "truncation_cutoff must be None or an int"),
        (lambda G, z: G(z[:, :5]), "z must"),
        (lambda G, z: G.synthesize(torch.zeros(2, 3, 32)), "ws must"),
    ],
)
def test_bad_call_raises_value_error(call, match):
    G = small_generator()
    with pytest.raises(ValueError, match=match):
        call(G, torch.randn(2, 32, dtype=torch.float64))


@pytest.mark.parametrize("psi", ["0.5", None, True, torch.ones(2)])
def test_truncation_psi_must_be_a_real_number(psi):
    with pytest.raises(TypeError, match="truncation_psi must be a real number"):
        small_generator()(torch.randn(2, 32, dtype=torch.float64), truncation_psi=psi)


def test_integer_latent_raises_type_error():
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        small_generator()(torch.ones(2, 32, dtype=torch.long))
