import os

import pytest
import torch

# Without a GPU, Triton kernels run on CPU tensors through the interpreter. It must be
# chosen before triton is first imported, so here, before any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


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
