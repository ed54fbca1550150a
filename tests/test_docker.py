"""The Dockerfile parses and passes hadolint (no Docker engine here to build it)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint():
    # the test extras install it next to this interpreter, which need not be on PATH (make test)
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (it comes with the test extras: pip install -e '.[test]')")
    result = subprocess.run([hadolint, "--config", str(ROOT / "docker" / "hadolint.yaml"),
                             str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_what_make_install_needs():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    copied = {part for line in text.splitlines() if line.startswith("COPY") for part in line.split()[1:-1]}
    for needed in ("pyproject.toml", "Makefile", "requirements", "scripts", "src", "main.py", "yamls"):
        assert needed in copied, f"docker/Dockerfile does not COPY {needed}"
    assert "make install" in text
