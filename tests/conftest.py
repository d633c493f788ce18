import hashlib
import os
import tempfile
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors through the interpreter. It must be
# chosen before triton is first imported, so here, before any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _inductor_cache_dir():
    """A torch.compile cache directory of this build of stylegan_ops alone. The on-disk caches key
    a graph by the ops it calls, not by their schemas (README, "torch.compile's caches after an
    upgrade"): a graph compiled before a rebuild that changed a backward op's arguments would be
    reused, and fail: "Tried to convert a List with 2 elements to a fixed-size array of size 3"
    from a generator's native+compile backward in .ci/run (CI=true) on the machine that had run
    the tests before upsample_conv2d_backward's mask grew from 2 entries to 3. Named after the
    package's Python sources and compiled extension, so a rebuild starts an empty one and an
    unchanged build reuses its own."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1] / "stylegan_ops"
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".so"):
            digest.update(path.read_bytes())
    return os.path.join(tempfile.gettempdir(), f"stylegan_ops_torchinductor_{digest.hexdigest()[:16]}")


os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", _inductor_cache_dir())


def pytest_configure(config):
    # DESIGN.md §3: float32 comparisons run with TF32 off.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_teardown(item):
    # The caching allocator would keep a large test's blocks from the next one (benchmarks/gpu_suite.sh
    # runs the large_gpu_memory tests one after another, apart from the others).
    if "large_gpu_memory" in item.keywords:
        torch.cuda.empty_cache()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def cpu_backend_or_skip(backend: str, op: str) -> str:
    """Skip a test of ``backend`` on CPU tensors if it cannot run here, unless CI lists it in
    STYLEGAN_OPS_TEST_REQUIRE (comma-separated), where a missing backend must fail, not skip."""
    from stylegan_ops import backends
    from stylegan_ops.ops import IMPLEMENTED_BACKENDS

    reason = backends.unavailable_reason(backend, "cpu", op, IMPLEMENTED_BACKENDS[op])
    if reason is None:
        return backend
    required = os.environ.get("STYLEGAN_OPS_TEST_REQUIRE", "").split(",")
    if backend in required and backend in IMPLEMENTED_BACKENDS[op]:
        pytest.fail(f"{backend} is required by STYLEGAN_OPS_TEST_REQUIRE but cannot run: {reason}")
    pytest.skip(reason)
