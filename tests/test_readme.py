"""The README's CPU examples run as written, in order, on a fresh copy of the repository.

Every fenced block marked ```` ```bash cpu ```` is one of them: its commands run one by one from the
copy's root, with this interpreter's environment first on PATH (``efficient-bert``, ``composer``).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BLOCK = re.compile(r"^```bash cpu\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_commands(text: str) -> list[str]:
    """The commands of the README's ``bash cpu`` blocks: continuation lines joined, comments dropped."""
    commands = []
    for block in BLOCK.findall(text):
        for command in block.replace("\\\n", " ").splitlines():
            command = " ".join(shlex.split(command, comments=True))  # also checks the quoting
            if command:
                commands.append(command)
    return commands


def test_the_blocks_are_found():
    commands = readme_commands((ROOT / "README.md").read_text())
    assert commands[0].startswith("efficient-bert train-tokenizer --in_root data/sample")
    assert any(c.startswith("efficient-bert report") for c in commands)


@pytest.mark.slow
def test_every_cpu_example_of_the_readme_runs_as_written(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("main.py", "convert_c4.py"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("yamls", "data", "bench", "scripts"):
        shutil.copytree(ROOT / name, repo / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "WANDB_MODE": "offline", "CUDA_VISIBLE_DEVICES": ""}
    for command in readme_commands((ROOT / "README.md").read_text()):
        done = subprocess.run(command, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert (repo / "runs" / "report" / "report.md").is_file()
    assert (repo / "runs" / "budget-demo" / "time_markers" / "marker-0.5").is_dir()
