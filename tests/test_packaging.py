"""The sdist carries what a build from it and its tests need; setup.py refuses, with a message, the
torch and setuptools a build would fail with later, and gives the license in the form the installed
setuptools takes.

``python -m build`` (and ``pip install`` of an sdist) builds the wheel from the sdist, not from the
checkout. setuptools puts in an sdist only the sources setup.py lists, not the headers they
include: before MANIFEST.in, every header of csrc/ was missing and such a build failed at its first
``#include``; the tests' helpers (conftest.py, reference.py, the CUDA emulation) were missing too.
"""

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _expected_files():
    """The package, csrc/, tests/ and the benchmark scripts, as paths relative to the root, less
    what MANIFEST.in excludes (bytecode, built extensions)."""
    patterns = ["stylegan_ops/**/*.py", "csrc/**/*", "tests/**/*", "benchmarks/*.py", "benchmarks/*.sh",
                "benchmarks/README.md", "setup.py", "pyproject.toml", "README.md", "MANIFEST.in", "LICENSE"]
    files = {path for pattern in patterns for path in ROOT.glob(pattern) if path.is_file()}
    return {path.relative_to(ROOT).as_posix() for path in files
            if "__pycache__" not in path.parts and path.suffix not in (".pyc", ".so")}


def test_sdist_carries_the_sources_headers_tests_and_benchmark_scripts(tmp_path):
    # STYLEGAN_OPS_CUDA=0: setup.py decides on CUDA when it runs, and an sdist needs no toolkit.
    env = dict(os.environ, STYLEGAN_OPS_CUDA="0")
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path), "sdist",
                    "--dist-dir", str(tmp_path)], cwd=ROOT, env=env, check=True, capture_output=True)
    (archive,) = tmp_path.glob("stylegan_ops-*.tar.gz")
    with tarfile.open(archive) as sdist:
        carried = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = _expected_files()
    assert {"csrc/cuda/runtime.h", "csrc/upsample_conv2d.h", "tests/conftest.py"} <= expected  # the walk works
    assert sorted(expected - carried) == []
    assert not [name for name in carried if name.startswith("benchmarks/results/")]  # logs and plots stay out


@pytest.mark.parametrize("module, found", [("torch", "2.10.0"), ("setuptools", "65.5.0")])
def test_build_refuses_a_too_old_torch_or_setuptools_with_a_message(module, found):
    """A build against an older torch would fail at import; one with a setuptools older than 70.1 and
    no wheel package fails inside pip with "invalid command 'bdist_wheel'" (a fresh Python 3.11 venv
    has 65.5 and no wheel): setup.py says what to install instead."""
    run_setup = (f"import runpy, sys, {module}; {module}.__version__ = {found!r}; sys.modules['wheel'] = None; "
                 "sys.argv = ['setup.py', '--name']; runpy.run_path('setup.py', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", run_setup], cwd=ROOT, env=dict(os.environ, STYLEGAN_OPS_CUDA="0"),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert f"stylegan_ops needs {module} >= " in result.stderr and f" {found}" in result.stderr


def test_metadata_names_the_license_in_the_form_the_installed_setuptools_takes(tmp_path):
    """MIT as PEP 639's License-Expression where setuptools takes one (77 on; it deprecates
    pyproject's `license = { text = ... }` table, and its releases after 2027-02-18 refuse it), as
    the older License field before; CI's second stage builds with setuptools 70.1, the oldest
    setup.py accepts. The LICENSE file goes with it either way."""
    import setuptools

    result = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=ROOT,
                            env=dict(os.environ, STYLEGAN_OPS_CUDA="0"), check=True, capture_output=True, text=True)
    assert "license" not in result.stderr.lower()  # no deprecation warning about it
    (pkg_info,) = tmp_path.glob("*.egg-info/PKG-INFO")
    fields = re.findall(r"^(License[-A-Za-z]*): (.*)$", pkg_info.read_text(), flags=re.MULTILINE)
    expression = tuple(int(part) for part in setuptools.__version__.split(".")[:2]) >= (77, 0)
    assert fields == [("License-Expression" if expression else "License", "MIT"), ("License-File", "LICENSE")]
