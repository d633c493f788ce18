"""Backend availability and the errors for backends that cannot run."""

import logging
import os
import re
import warnings

import pytest
import torch

import stylegan_ops as so
from stylegan_ops import backends
from reference import rel_l2


def test_eager_is_available_everywhere():
    assert "eager" in so.available_backends("cpu")
    assert "eager" in so.available_backends(torch.device("cpu"))
    assert "eager" in so.available_backends("cuda")


def test_available_backends_rejects_non_devices():
    with pytest.raises(TypeError, match="device"):
        so.available_backends(3)


def test_unknown_backend_is_a_value_error():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="backend"):
        so.upsample_conv2d(x, torch.randn(2, 2, 3, 3), backend="fastest")


def test_triton_on_cpu_without_interpreter_says_why(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = backends.unavailable_reason("triton", "cpu")
    assert reason is not None and ("TRITON_INTERPRET" in reason or "not installed" in reason)
    assert "triton" not in so.available_backends("cpu")


def test_native_cuda_needs_cuda_kernels_and_a_device():
    info = so.build_info()
    reason = backends.unavailable_reason("native", "cuda")
    if not info["extension"]:
        assert reason == info["error"]
    elif info["cuda"] is None:
        assert "without CUDA kernels" in reason
    elif not torch.cuda.is_available():
        assert "no CUDA device" in reason
    else:
        assert reason is None


class _StandInExtension:
    """The compiled module of a CUDA build made for TORCH_CUDA_ARCH_LIST=9.0, answering for a device's
    kernel image with ``error`` ("" when it loads) and recording the devices it was asked about."""

    cuda_version, cuda_arch_list = 13000, "9.0"

    def __init__(self, error):
        self.error, self.asked = error, []

    @torch.compiler.disable  # opaque to torch.compile, as the compiled module's C function is
    def cuda_kernel_image_error(self, index):
        self.asked.append(index)
        return self.error


@pytest.fixture
def stand_in_gpu(monkeypatch):
    """make(capability, error): cuda:0 of that compute capability, and a stand-in extension whose
    kernels load there or fail with ``error``; no device's answer cached yet. With visible=False
    torch.cuda still says what the machine has (Inductor asks it about the machine)."""
    from stylegan_ops import _extension

    def make(capability, error, visible=True):
        extension = _StandInExtension(error)
        monkeypatch.setattr(_extension, "_C", extension)
        monkeypatch.setattr(_extension, "_CUDA_DEVICE_REASONS", {})
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
        if visible:
            monkeypatch.setattr(backends, "_warned_causes", set())
            monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
            monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        return extension

    return make


def test_native_on_a_gpu_the_build_has_no_kernels_for_says_how_to_rebuild(stand_in_gpu):
    """A build for sm_90 (the default without a visible GPU) on an sm_86 device: its first launch
    would fail, so native is unavailable there, explicit native raises the reason before any launch,
    and auto passes over it with one warning. The device is asked once a process."""
    from stylegan_ops.ops import IMPLEMENTED_BACKENDS

    extension = stand_in_gpu((8, 6), "no kernel image is available for execution on the device")
    reason = backends.unavailable_reason("native", "cuda")
    for part in ("TORCH_CUDA_ARCH_LIST='9.0'", "cuda:0 (compute capability 8.6)",
                 "no kernel image is available", 'rebuild with TORCH_CUDA_ARCH_LIST="8.6"'):
        assert part in reason, (part, reason)
    assert backends.unavailable_reason("native", torch.device("cuda", 0)) == reason
    assert "native" not in so.available_backends("cuda")
    cuda = torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match="backend='native' cannot run on cuda tensors: this build's CUDA"):
        backends.resolve("native", cuda, "upsample_conv2d", IMPLEMENTED_BACKENDS["upsample_conv2d"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for op in ("upsample_conv2d", "noise_adain_lrelu"):
            chosen = backends.resolve("auto", cuda, op, IMPLEMENTED_BACKENDS[op])
            assert chosen == ("triton" if backends._TRITON_INSTALLED else "eager")
    assert [str(w.message) for w in caught] == [
        f"stylegan_ops.upsample_conv2d: backend='auto' passes over 'native' on cuda: {reason}"]
    assert extension.asked == [0]


def test_native_on_a_gpu_older_than_compute_capability_8_says_so(stand_in_gpu):
    extension = stand_in_gpu((7, 5), "")
    reason = backends.unavailable_reason("native", torch.device("cuda", 0))
    assert reason == "cuda:0 has compute capability 7.5, and stylegan_ops' CUDA kernels are made for 8.0 and newer"
    assert extension.asked == []  # no kernel is loaded where none could run


def test_native_on_a_gpu_whose_kernels_load_is_available(stand_in_gpu):
    extension = stand_in_gpu((9, 0), "")
    assert backends.unavailable_reason("native", "cuda") is None
    assert "native" in so.available_backends("cuda")
    assert extension.asked == [0]


def test_compile_takes_the_device_answer_as_a_constant(stand_in_gpu):
    """torch.compile traces the public functions, backend resolution included: the device's answer
    comes from one call while tracing (torch.compiler.assume_constant_result), no graph break."""
    from stylegan_ops import _extension

    extension = stand_in_gpu((8, 6), "no kernel image is available for execution on the device", visible=False)
    compiled = torch.compile(lambda x: x + (_extension.cuda_device_unsupported_reason(0) is None), fullgraph=True)
    for _ in range(2):
        assert torch.equal(compiled(torch.zeros(3)), torch.zeros(3))
    assert extension.asked == [0]


@pytest.mark.skipif(so.build_info()["cuda"] is None or torch.cuda.is_available(),
                    reason="needs a CUDA build on a machine without a usable CUDA device")
def test_kernel_image_probe_without_a_device_answers_in_text():
    from stylegan_ops import _extension

    error = _extension._C.cuda_kernel_image_error(0)  # the CUDA runtime's error (no driver, no device)
    assert isinstance(error, str) and error


@pytest.mark.gpu
def test_gpu_this_build_runs_on_every_visible_device():
    """The GPU suite's build (TORCH_CUDA_ARCH_LIST=9.0) on an H100 or H200: the probe loads a kernel
    on each device and leaves no error behind for the next launch check."""
    from stylegan_ops import _extension

    for index in range(torch.cuda.device_count()):
        assert _extension._C.cuda_kernel_image_error(index) == ""
        device = torch.device("cuda", index)
        assert backends.unavailable_reason("native", device) is None
        x, weight = torch.randn(2, 8, 8, 8, device=device), torch.randn(4, 8, 3, 3, device=device)
        assert rel_l2(so.upsample_conv2d(x, weight, backend="native"),
                      so.upsample_conv2d(x, weight, backend="eager")) < 1e-5


def test_no_cuda_device_leaves_eager_alone(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert so.available_backends("cuda") == ["eager"]
    assert "no CUDA device is usable" in backends.unavailable_reason("triton", torch.device("cuda", 1))


def test_missing_implementation_raises_runtime_error_naming_it():
    x = torch.randn(1, 2, 4, 4)
    reason = backends.unavailable_reason("native", "cpu", "some_op", implemented=("eager",))
    assert "no native implementation of some_op" in reason
    with pytest.raises(RuntimeError, match="backend='native' cannot run"):
        backends.resolve("native", x.device, "some_op", ("eager",))


def test_auto_falls_back_to_eager_with_one_warning_per_cause():
    backends._warned_causes.discard("stylegan_ops has no native implementation of other_op yet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert backends.resolve("auto", torch.device("cpu"), "other_op", ("eager",)) == "eager"
    messages = [str(w.message) for w in caught if "other_op" in str(w.message)]
    assert len(messages) == 1 and "passes over 'native'" in messages[0]


def test_meta_tensors_get_shapes_from_eager():
    # Shape inference on meta tensors (deferred initialisation): only eager runs there, and auto picks it.
    assert so.available_backends("meta") == ["eager"]
    x = torch.empty(2, 3, 5, 4, device="meta").to(memory_format=torch.channels_last)
    style = torch.empty(2, 3, device="meta")
    y = so.noise_adain_lrelu(x, torch.empty(2, 1, 5, 4, device="meta"), torch.empty(3, device="meta"), style, style)
    assert y.device.type == "meta" and y.shape == x.shape and y.is_contiguous(memory_format=torch.channels_last)
    y = so.upsample_conv2d(x, torch.empty(7, 3, 3, 3, device="meta"), torch.empty(7, device="meta"))
    assert y.device.type == "meta" and y.shape == (2, 7, 10, 8)
    with pytest.raises(RuntimeError, match="backend='native' cannot run on meta"):
        so.upsample_conv2d(x, torch.empty(7, 3, 3, 3, device="meta"), backend="native")


def test_build_info_reports_cuda_version_when_compiled_in():
    info = so.build_info()
    assert set(info) == {"extension", "error", "cuda", "cuda_arch_list"}
    if os.environ.get("STYLEGAN_OPS_CUDA") == "1":  # CI forces the CUDA kernels in
        assert info["extension"] and info["cuda"] is not None, info
    if info["extension"] and torch.version.cuda is not None and info["cuda"] is not None:
        assert info["cuda"].split(".")[0] == torch.version.cuda.split(".")[0]


@pytest.mark.parametrize("value,expected", [(None, True), ("1", True), ("0", False), ("yes", ValueError)])
def test_triton_autotune_switch(monkeypatch, value, expected):
    from stylegan_ops.triton import autotune_on_gpu

    if value is None:
        monkeypatch.delenv("STYLEGAN_OPS_TRITON_AUTOTUNE", raising=False)
    else:
        monkeypatch.setenv("STYLEGAN_OPS_TRITON_AUTOTUNE", value)
    if expected is ValueError:
        with pytest.raises(ValueError, match="STYLEGAN_OPS_TRITON_AUTOTUNE"):
            autotune_on_gpu()
    else:
        assert autotune_on_gpu() is expected


def test_launch_autotuned_consults_the_autotuner_once_per_key(monkeypatch, caplog):
    """The GPU launchers go through Triton's autotuner the first time a key (the autotune key's
    argument values and the dtype) is seen, then launch the kernel with the config it chose; a
    slow first launch (the autotuner at work) is reported as it ends."""
    import stylegan_ops.triton
    from stylegan_ops.triton import launch_autotuned

    # This test's stand-ins stay out of the process's choices (the benchmark's JSON lists them).
    monkeypatch.setattr(stylegan_ops.triton, "_CHOSEN_CONFIGS", {})
    monkeypatch.setattr(stylegan_ops.triton, "_KEY_POSITIONS", {})

    launches = []

    class Config:
        def __init__(self, warps):
            self.warps = warps

        def all_kwargs(self):
            return {"num_warps": self.warps}

        def __str__(self):
            return f"num_warps: {self.warps}"

    def _kernel():  # the autotuned kernel's Python function, whose name the report gives
        pass

    class Kernel:  # kernel[grid](*args, **kwargs), logged
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((self.name, grid, args[1:], kwargs))

    class Autotuned(Kernel):  # tunes on every call it gets, choosing num_warps = how many launches came before
        arg_names, keys, fn = ["X", "M", "C"], ["M"], Kernel("kernel")
        base_fn = _kernel

        def __getitem__(self, grid):
            self.best_config = Config(len(launches))
            return super().__getitem__(grid)

    autotuned, x = Autotuned("autotuner"), torch.empty(1)
    # Every first launch for a key counts as slow here: each is reported, once, later launches never.
    monkeypatch.setattr(stylegan_ops.triton, "SLOW_FIRST_LAUNCH_SECONDS", 0.0)
    with caplog.at_level(logging.WARNING, logger="stylegan_ops.triton"):
        launch_autotuned(autotuned, (1,), x, 8, 3, FLAG=True)
        launch_autotuned(autotuned, (2,), x, 8, 5, FLAG=False)  # C is not in the key: the choice for M = 8
        launch_autotuned(autotuned, (1,), x, 16, 3)  # a new M
        launch_autotuned(autotuned, (1,), x.double(), 8, 3)  # a new dtype
        launch_autotuned(autotuned, (1,), x, 16, 3)
    assert launches == [("autotuner", (1,), (8, 3), {"FLAG": True}),
                        ("kernel", (2,), (8, 5), {"FLAG": False, "num_warps": 0}),
                        ("autotuner", (1,), (16, 3), {}),
                        ("autotuner", (1,), (8, 3), {}),
                        ("kernel", (1,), (16, 3), {"num_warps": 2})]
    reports = [re.sub(r"took [0-9.]+ s", "took T s", record.getMessage()) for record in caplog.records]
    assert reports == [f"stylegan_ops: the first launch of Triton's _kernel for {dtype}, {{'M': {m}}} took T s, "
                       "autotuning and compiling (once per shape and GPU architecture: the choice is kept in "
                       f"Triton's cache directory): num_warps: {warps}"
                       for dtype, m, warps in (("float32", 8, 0), ("float32", 16, 2), ("float64", 8, 3))]
    caplog.clear()
    monkeypatch.setattr(stylegan_ops.triton, "SLOW_FIRST_LAUNCH_SECONDS", 60.0)  # a quick first launch: silent
    launch_autotuned(autotuned, (1,), x, 32, 3)
    assert caplog.records == []


@pytest.mark.gpu
def test_gpu_autotuned_triton_launch_goes_through_the_autotuner_once(monkeypatch):
    """With autotuning on (the GPU suite's tests run with it off), a Triton launch tunes on its
    first call for a shape and later calls launch the chosen config without Triton's autotuner,
    with the same result."""
    from triton.runtime.autotuner import Autotuner

    import stylegan_ops.triton

    monkeypatch.setenv("STYLEGAN_OPS_TRITON_AUTOTUNE", "1")
    monkeypatch.setattr(stylegan_ops.triton, "_CHOSEN_CONFIGS", {})
    autotuner_runs = []
    run = Autotuner.run
    monkeypatch.setattr(Autotuner, "run", lambda self, *args, **kwargs: (autotuner_runs.append(self),
                                                                         run(self, *args, **kwargs))[1])
    x = torch.randn(2, 8, 16, 16, device="cuda")  # one program per plane: one autotuned kernel
    args = (x, torch.randn(2, 1, 16, 16, device="cuda"), torch.randn(8, device="cuda"),
            torch.randn(2, 8, device="cuda"), torch.randn(2, 8, device="cuda"))
    first = so.noise_adain_lrelu(*args, backend="triton")
    assert len(autotuner_runs) == 1
    again = so.noise_adain_lrelu(*args, backend="triton")
    assert len(autotuner_runs) == 1 and torch.equal(first, again)
    assert rel_l2(first, so.noise_adain_lrelu(*args, backend="eager")) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("backend", ["native", "triton"])
def test_ops_run_on_a_cuda_device_that_is_not_current(backend):
    """Tensors on cuda:1 while cuda:0 is current: the native ops guard x's device, the Triton
    launchers make it current (Triton launches on the current device)."""
    torch.cuda.set_device(0)
    x = torch.randn(2, 8, 16, 16, device="cuda:1", requires_grad=True)
    weight = torch.randn(4, 8, 3, 3, device="cuda:1", requires_grad=True)
    style = [torch.randn(2, 4, device="cuda:1") for _ in range(2)]
    noise, noise_weight = torch.randn(2, 1, 32, 32, device="cuda:1"), torch.randn(4, device="cuda:1")

    def run(backend):
        y = so.upsample_conv2d(x, weight, None, backend=backend)
        y = so.noise_adain_lrelu(y, noise, noise_weight, *style, backend=backend)
        return (y, *torch.autograd.grad(y.square().sum(), (x, weight)))

    for got, want in zip(run(backend), run("eager")):
        assert got.device == torch.device("cuda:1")
        assert rel_l2(got, want) < 1e-4
