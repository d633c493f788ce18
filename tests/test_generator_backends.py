"""The generator on the fused ops: backends agree with eager (also in double backward: the path
length penalty), torch.compile, autocast, channels_last, replays of a step captured in a CUDA
graph (GPU), converting seed models, and DistributedDataParallel (two CPU processes)."""

import collections
import copy
import functools
import json
import os
import weakref
import zipfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import stylegan_ops as so
from stylegan_ops import bench
from conftest import cpu_backend_or_skip
from reference import OpCalls, SeedSynthesisBlock, rel_l2

SMALL = dict(z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16, resolution=16)


@pytest.fixture(params=["native", "triton"])
def backend(request):
    cpu_backend_or_skip(request.param, "noise_adain_lrelu")
    return cpu_backend_or_skip(request.param, "upsample_conv2d")


def make_generator(**kwargs):
    torch.manual_seed(0)
    G = so.nn.Generator(**{**SMALL, "backend": "eager", **kwargs})
    for block in G.blocks:  # non-zero noise strength, so the noise path is exercised
        torch.nn.init.uniform_(block.noise_injection.weight, 0.2, 0.6)
    return G


def grad_image(img):
    return torch.randn(img.shape, generator=torch.Generator().manual_seed(1)).to(img)


def image_and_grads(G, z, grad_img=None):
    """A training step's image and parameter gradients for the image's gradient ``grad_img``
    (grad_image's by default; under CUDA graph capture it must be made before: its copy from the
    host would wait for the device)."""
    img = G(z, noise_mode="const")
    grads = torch.autograd.grad(img, list(G.parameters()), grad_image(img) if grad_img is None else grad_img)
    # All gradients as one vector: a conv bias in front of an instance norm has an exactly-zero
    # gradient, whose per-tensor relative error would only measure rounding noise.
    return img, torch.cat([g.flatten() for g in grads])


def test_backends_agree_with_eager_float32(backend):
    G = make_generator()
    z = torch.randn(2, 16)
    ref_img, ref_grads = image_and_grads(make_generator().double(), z.double())
    G.backend = backend
    img, grads = image_and_grads(G, z)
    assert rel_l2(img, ref_img) < 1e-5
    assert rel_l2(grads, ref_grads) < 1e-4


def _conv_biases_and_their_gradients(G):
    """The bias argument of every convolution of a forward (the blocks' upsampling and plain convs,
    then to_rgb's), and the gradients of the blocks' conv biases."""
    with OpCalls() as ops:
        img = G(torch.randn(2, 16), noise_mode="const")
    conv_ops = (torch.ops.aten.convolution.default, torch.ops.stylegan_ops.upsample_conv2d.default,
                torch.ops.stylegan_ops.upsample_conv2d_triton.default)
    biases = [args[2] for func, args, _ in ops.calls if func in conv_ops]
    grads = torch.autograd.grad(img.square().sum(), [block.conv.bias for block in G.blocks])
    return biases, grads


def test_conv_biases_before_instance_norm_are_left_out(backend):
    """Instance norm subtracts every per-channel constant, so a block's conv bias changes nothing: on
    the fused backends the generator leaves it out (no pass over the conv's output to add it, no sum
    over it for its gradient) and gives it its exact gradient, zero; eager stays the seed's
    computation, biases and all. to_rgb's bias, after the last norm, stays."""
    G = make_generator()
    biases, _ = _conv_biases_and_their_gradients(G)
    assert len(biases) == G.num_ws + 1 and all(b is not None for b in biases)
    G.backend = backend
    biases, grads = _conv_biases_and_their_gradients(G)
    assert len(biases) == G.num_ws + 1 and all(b is None for b in biases[:-1]) and biases[-1] is G.to_rgb.bias
    assert all(torch.equal(g, torch.zeros_like(g)) for g in grads)


def projected(G):
    """G set up for projecting an image into it (StyleGAN2's projector), which optimises w and the
    per-layer noise maps: gradients flow into the const noise buffers (one (1, 1, H, W) map each,
    broadcast over the batch), not into the frozen parameters."""
    G.requires_grad_(False)
    for i in range(G.num_ws):
        getattr(G, f"noise_const_{i}").requires_grad_()
    return G


def w_and_noise_grads(G, ws):
    """A projection step's gradients of the ws and (as one vector) of the noise maps of G = projected(...)."""
    ws = ws.detach().requires_grad_()
    img = G.synthesize(ws, noise_mode="const")
    buffers = [getattr(G, f"noise_const_{i}") for i in range(G.num_ws)]
    grad_ws, *grad_noise = torch.autograd.grad(img.square().mean(), [ws, *buffers])
    return grad_ws, torch.cat([g.flatten() for g in grad_noise])


def test_projection_gradients_of_w_and_noise_maps(backend):
    ws = torch.randn(2, make_generator().num_ws, 16, generator=torch.Generator().manual_seed(2))
    want = w_and_noise_grads(projected(make_generator().double()), ws.double())
    got = w_and_noise_grads(projected(make_generator(backend=backend)), ws)
    assert rel_l2(got[0], want[0]) < 1e-4 and rel_l2(got[1], want[1]) < 1e-4


def path_length_penalty_grads(G, ws):
    """StyleGAN2's path length regularisation of G: the norm of the ws' gradient of the image against
    random image-space directions, differentiated again for the parameters' gradients of its penalty
    (create_graph=True: the backward of both ops' backward). Returns the penalty and the parameter
    gradients as one vector (the fused blocks' conv biases take no part: zero)."""
    ws = ws.detach().requires_grad_()
    img = G.synthesize(ws, noise_mode="const")
    directions = grad_image(img) / img.shape[2]
    grad_ws, = torch.autograd.grad((img * directions).sum(), ws, create_graph=True)
    penalty = (grad_ws.square().sum(dim=2).mean(dim=1).sqrt() - 0.5).square().mean()
    params = list(G.parameters())
    grads = torch.autograd.grad(penalty, params, allow_unused=True)
    return penalty, torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def _assert_path_length_penalty_matches_eager(backend, device):
    ws = torch.randn(2, make_generator().num_ws, 16, generator=torch.Generator().manual_seed(2)).to(device)
    want_penalty, want_grads = path_length_penalty_grads(make_generator().double().to(device), ws.double())
    penalty, grads = path_length_penalty_grads(make_generator(backend=backend).to(device), ws)
    assert rel_l2(penalty, want_penalty) < 1e-5
    assert rel_l2(grads, want_grads) < 1e-4


def test_path_length_penalty_gradients_match_eager(backend):
    _assert_path_length_penalty_matches_eager(backend, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_path_length_penalty_gradients_match_eager(gpu_backend):
    _assert_path_length_penalty_matches_eager(gpu_backend, "cuda")


def _checkpointed_step(G, ws, use_reentrant):
    """A training step of G's synthesis network with random noise, under activation checkpointing
    (use_reentrant: False or True, checkpoint's two kinds) or without it (None): its image, the
    gradients of the ws and of every synthesis parameter, and whether each block's output is still
    alive when the forward ends (before backward)."""
    outputs = []
    hooks = [block.register_forward_hook(lambda module, args, out: outputs.append(weakref.ref(out)))
             for block in G.blocks]
    try:
        torch.manual_seed(3)  # the noise draws; checkpoint replays them in its recomputation
        ws = ws.detach().requires_grad_()
        synthesize = functools.partial(G.synthesize, noise_mode="random")
        if use_reentrant is None:
            img = synthesize(ws)
        else:
            img = torch.utils.checkpoint.checkpoint(synthesize, ws, use_reentrant=use_reentrant)
        alive = [ref() is not None for ref in outputs]
    finally:
        for hook in hooks:
            hook.remove()
    G.zero_grad(set_to_none=True)
    img.backward(grad_image(img))  # not autograd.grad, which reentrant checkpointing refuses
    synthesis_parameters = [p for name, p in G.named_parameters() if not name.startswith("mapping.")]
    return img, [ws.grad] + [p.grad for p in synthesis_parameters], alive


def _assert_checkpointing_recomputes_the_step(backend, device, use_reentrant):
    G = make_generator(backend=backend).to(device)
    ws = torch.randn(2, G.num_ws, 16, generator=torch.Generator().manual_seed(2)).to(device)
    img, grads, alive = _checkpointed_step(G, ws, use_reentrant=None)
    assert len(alive) == G.num_ws and all(alive)
    img_checkpointed, grads_checkpointed, alive = _checkpointed_step(G, ws, use_reentrant)
    assert len(alive) == G.num_ws and not any(alive)
    assert torch.equal(img_checkpointed, img)
    assert all(torch.equal(a, b) for a, b in zip(grads_checkpointed, grads))


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_activation_checkpointing_recomputes_the_step_bitwise_and_frees_the_activations(backend, use_reentrant):
    """torch.utils.checkpoint around the synthesis network, trading a second forward for the
    activations: after its forward no block's output is alive (the fused ops' saved inputs go
    through the saved-tensor hooks that non-reentrant checkpointing drops them by; the reentrant
    kind runs the forward without grad), where a plain forward keeps every one for backward; and
    the backward's recomputation, the noise draws replayed, gives bitwise the plain step's image and
    gradients (the fused ops draw no random numbers and compute reproducibly)."""
    _assert_checkpointing_recomputes_the_step(backend, "cpu", use_reentrant)


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_activation_checkpointing_recomputes_the_step_bitwise(gpu_backend):
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):  # the plain convs' too
        _assert_checkpointing_recomputes_the_step(gpu_backend, "cuda", use_reentrant=False)


def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    G = make_generator(backend=backend)
    z = torch.randn(2, 16)
    compiled = torch.compile(G, fullgraph=True, backend="aot_eager")
    img = compiled(z, noise_mode="const")
    assert rel_l2(img, G(z, noise_mode="const")) < 1e-6
    grads = torch.autograd.grad(img.square().sum(), list(G.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def eager_image(G, z):
    """G's image of z with its const noise on eager, G's backend left as it was."""
    backend = G.backend
    G.backend = "eager"
    try:
        return G(z, noise_mode="const")
    finally:
        G.backend = backend


def test_torch_compile_with_a_dynamic_batch_serves_every_batch_size_from_one_graph(backend):
    """A training loop's last, smaller batch, or sampling at another batch size: compiled with
    dynamic=True, the generator is traced once (the fused ops' fake kernels carry a symbolic batch,
    the generator's own code leaves no guard on it) and every batch size matches eager."""
    torch._dynamo.reset()
    G = make_generator(backend=backend)
    compiled = torch.compile(G, fullgraph=True, dynamic=True, backend="aot_eager")
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for batch in (2, 3, 5):
        z = torch.randn(batch, 16)
        assert rel_l2(compiled(z, noise_mode="const"), eager_image(G, z)) < 1e-5
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before == 1


class _ConstNoiseGenerator(torch.nn.Module):
    """G(z, noise_mode="const") as a module of z alone, what torch.export takes."""

    def __init__(self, G):
        super().__init__()
        self.G = G

    def forward(self, z):
        return self.G(z, noise_mode="const")


def _exported(backend):
    """A small generator on ``backend`` as a module of z, its export with a dynamic batch, and the
    number of calls of each fused op a forward makes, by op name ("noise_adain_lrelu" or with
    Triton "noise_adain_lrelu_triton", and upsample_conv2d's)."""
    G = make_generator(backend=backend).eval()
    model = _ConstNoiseGenerator(G)
    program = torch.export.export(model, (torch.randn(2, 16),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    suffix = "" if backend == "native" else "_triton"
    calls = {f"noise_adain_lrelu{suffix}": G.num_ws, f"upsample_conv2d{suffix}": sum(b.use_upsample for b in G.blocks)}
    return model, program, calls


def test_torch_export_with_a_dynamic_batch_saves_and_loads(backend, tmp_path):
    """Deploying a generator: torch.export traces the fused ops into the program (their fake kernels
    carry a symbolic batch), and the saved and reloaded program gives the module's images at other
    batch sizes than the one it was traced with."""
    model, program, calls = _exported(backend)
    traced = collections.Counter(str(node.target) for node in program.graph.nodes
                                 if str(node.target).startswith("stylegan_ops."))
    assert traced == {f"stylegan_ops.{name}.default": count for name, count in calls.items()}
    G = model.G
    torch.export.save(program, tmp_path / "generator.pt2")
    loaded = torch.export.load(tmp_path / "generator.pt2").module()
    for batch in (1, 3):
        z = torch.randn(batch, 16)
        assert torch.equal(loaded(z), model(z))
        assert rel_l2(loaded(z), eager_image(G, z)) < 1e-5


def test_aot_inductor_package_calls_the_fused_ops(backend, tmp_path):
    """AOTInductor compiles the exported generator into a C++ package that calls the fused ops
    through the dispatcher, so a process loading it imports stylegan_ops first (which registers
    them; for Triton's, implemented in Python, the process is a Python one). 10 to 20 s of C++
    compiling a backend."""
    model, program, calls = _exported(backend)
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "generator.pt2"))
    with zipfile.ZipFile(package) as archive:  # the ops the compiled wrapper calls through the dispatcher
        extern, = [json.loads(archive.read(name)) for name in archive.namelist() if name.endswith(".wrapper.json")]
    assert collections.Counter(node["node"]["target"] for node in extern["nodes"]) == {
        f"stylegan_ops::{name}": count for name, count in calls.items()}
    run = torch._inductor.aoti_load_package(package)
    for batch in (1, 3):
        z = torch.randn(batch, 16)
        assert rel_l2(run(z), model(z)) < 1e-6


def test_autocast_runs_fused_ops_in_bfloat16(backend):
    torch.manual_seed(0)
    block = so.nn.SynthesisBlock(8, 6, 16, use_upsample=True, backend=backend)
    torch.nn.init.constant_(block.noise_injection.weight, 0.3)
    x, w, noise = torch.randn(2, 8, 5, 5), torch.randn(2, 16), torch.randn(2, 1, 10, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x, w, noise)
        up = so.upsample_conv2d(x, block.conv.weight, block.conv.bias, backend=backend)
    assert y.dtype == torch.bfloat16 and up.dtype == torch.bfloat16
    block.backend = "eager"
    assert rel_l2(y, block(x, w, noise)) < 2e-2


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_autocast_generator(gpu_backend, dtype):
    G = make_generator(backend=gpu_backend).cuda()
    z = torch.randn(4, 16, device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        img = G(z, noise_mode="const")
        block_out = G.blocks[2](torch.randn(4, 16, 4, 4, device="cuda"), torch.randn(4, 16, device="cuda"))
    assert block_out.dtype == dtype
    G.backend = "eager"
    assert rel_l2(img, G(z, noise_mode="const")) < 3e-2


def _assert_replays_match_eager(step, static_input, eager_step):
    """``step`` captured in a CUDA graph as the benchmark's '+graph' backends capture it
    (``bench._graphed``: torch.cuda.graph's whole-network capture, after warm-up calls on a side
    stream): replays with new values copied into its captured input give eager_step's float64
    results for them (a replay of stale arguments, or of a capture that left a kernel out, would not)."""
    replay, _ = bench._graphed(step)
    for seed in (3, 4):
        values = torch.randn(static_input.shape, generator=torch.Generator().manual_seed(seed)).cuda()
        static_input.copy_(values)
        outputs = replay()
        torch.cuda.synchronize()
        for got, want in zip(outputs, eager_step(values.double()), strict=True):
            assert rel_l2(got, want) < 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_training_step_replays_from_a_cuda_graph(gpu_backend):
    """A training step, forward and backward, captured in one CUDA graph: the way to take a
    generator step's CPU launches off a call that the CPU bounds (benchmarks, '+graph')."""
    G = make_generator(backend=gpu_backend).cuda()
    z = torch.zeros(2, 16, device="cuda")
    grad_img = grad_image(G(z, noise_mode="const"))
    reference = make_generator().double().cuda()
    _assert_replays_match_eager(lambda: image_and_grads(G, z, grad_img), z,
                                lambda z: image_and_grads(reference, z, grad_img.double()))


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_projection_step_replays_from_a_cuda_graph(gpu_backend):
    """The same for a projection step, whose backward launches the noise's gradient kernels."""
    G = projected(make_generator(backend=gpu_backend).cuda())
    ws = torch.zeros(2, G.num_ws, 16, device="cuda")
    reference = projected(make_generator().double().cuda())
    _assert_replays_match_eager(lambda: w_and_noise_grads(G, ws), ws, lambda ws: w_and_noise_grads(reference, ws))


@pytest.mark.gpu
@pytest.mark.parametrize("gpu_backend", ["native", "triton"])
def test_gpu_compile_reduce_overhead_records_cuda_graphs(gpu_backend):
    """torch.compile(mode="reduce-overhead") of a training generator (w_avg updated in place) records
    its compiled forward and backward, fused ops inside, in CUDA graphs (Inductor's cudagraph
    trees: run, record, then replay from the third call): none skipped, every call as eager."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    G = make_generator(backend=gpu_backend).cuda()
    compiled = torch.compile(G, mode="reduce-overhead")
    reference = make_generator().double().cuda()
    for seed in (3, 4, 5):
        z = torch.randn(2, 16, generator=torch.Generator().manual_seed(seed)).cuda()
        img, grads = image_and_grads(compiled, z)
        want_img, want_grads = image_and_grads(reference, z.double())
        assert rel_l2(img, want_img) < 1e-4 and rel_l2(grads, want_grads) < 1e-4
    assert torch._dynamo.utils.counters["inductor"]["cudagraph_skips"] == 0


# channels_last=True, or .to(memory_format=torch.channels_last) after construction: every block's
# output is channels_last (the to-RGB conv alone would make the image so).
@pytest.mark.parametrize("backend_name", ["eager", "native"])
@pytest.mark.parametrize("convert", ["constructor", "to"])
def test_channels_last_end_to_end(backend_name, convert):
    cpu_backend_or_skip(backend_name, "upsample_conv2d")
    G = make_generator(backend=backend_name)
    if convert == "constructor":
        G_cl = make_generator(backend=backend_name, channels_last=True)
        G_cl.load_state_dict(G.state_dict())
    else:
        G_cl = copy.deepcopy(G).to(memory_format=torch.channels_last)
    assert G_cl.blocks[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    block_outputs = []
    for block in G_cl.blocks:
        block.register_forward_hook(lambda module, args, out: block_outputs.append(out))
    z = torch.randn(2, 16)
    img = G_cl(z, noise_mode="const")
    assert len(block_outputs) == len(G_cl.blocks)
    assert all(out.is_contiguous(memory_format=torch.channels_last) for out in block_outputs + [img])
    assert rel_l2(img, G(z, noise_mode="const")) < 1e-5


def test_convert_swaps_backends_and_seed_blocks():
    seed = torch.nn.Sequential(SeedSynthesisBlock(4, 6, 16, True), SeedSynthesisBlock(6, 6, 16, False))
    with torch.no_grad():
        for p in seed.parameters():
            p.normal_()
    x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 16)
    noises = [torch.randn(2, 1, 10, 10), torch.randn(2, 1, 10, 10)]
    expected = seed[1](seed[0](x, w, noises[0]), w, noises[1])
    converted = so.nn.convert(seed, "eager")
    assert all(isinstance(m, so.nn.SynthesisBlock) and m.backend == "eager" for m in converted)
    assert rel_l2(converted[1](converted[0](x, w, noises[0]), w, noises[1]), expected) < 1e-6
    G = make_generator()
    so.nn.convert(G, "native")
    assert all(block.backend == "native" for block in G.blocks)


# ---- DistributedDataParallel ---------------------------------------------------------------------
STEPS, LR = 2, 0.05


def _train(G, z, steps):
    optimizer = torch.optim.SGD(G.parameters(), lr=LR)
    for step in range(steps):
        img = G(z[step], noise_mode="const")
        loss = (img - 0.1).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _ddp_worker(rank, world_size, init_file, z, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    G = make_generator(backend="native")
    ddp = torch.nn.parallel.DistributedDataParallel(G)
    half = z.shape[1] // world_size
    _train(ddp, z[:, rank * half : (rank + 1) * half], STEPS)
    torch.save(G.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_two_processes_equal_single_process_on_whole_batch(tmp_path):
    cpu_backend_or_skip("native", "upsample_conv2d")
    torch.manual_seed(3)
    z = torch.randn(STEPS, 4, 16)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), z, str(tmp_path)), nprocs=2, join=True)
    single = make_generator(backend="native")
    _train(single, z, STEPS)
    expected = single.state_dict()
    initial = make_generator().state_dict()
    for rank in range(2):
        trained = torch.load(tmp_path / f"rank{rank}.pt")
        for name, value in expected.items():
            if name == "w_avg":  # DDP broadcasts rank 0's buffers; only the parameters are compared
                continue
            moved = (value - initial[name]).norm()
            assert (trained[name] - value).norm() <= 1e-4 * moved + 1e-6, name
