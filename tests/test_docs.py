"""The docs' examples run as written: every ```` ```bash cpu ```` and ```` ```python cpu ```` block of the README,
the guides in docs/ and the algorithm READMEs, in order, on a fresh copy of the repository. A block that
needs a GPU is checked as far as the CPU can: each main.py command's YAML files and overrides load and name
real components, and each Python block compiles and imports what it uses."""

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

# in the order a reader meets them: data.md makes runs/tok and runs/mds, training.md runs/demo-run
DOCS = ["README.md", "docs/data.md", "docs/training.md", "docs/budget.md", "docs/finetuning.md", "docs/mosaic-bert.md",
        "docs/modernbert.md", "docs/methods.md", "docs/distributed.md", "docs/compare.md",
        *(f"src/efficient_bert/algorithms/{name}/README.md" for name in
          ("layer_stacking", "layer_drop", "selective_backprop", "rho_loss", "sophia_hessian", "batch_size_warmup"))]
BLOCK = re.compile(r"^```(bash|python)( cpu)?\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(doc: str) -> list[tuple[str, bool, str]]:
    """(language, runs on the CPU, text) of every fenced bash or python block of ``doc``."""
    return [(lang, bool(cpu), text) for lang, cpu, text in BLOCK.findall((ROOT / doc).read_text())]


def commands(text: str) -> list[str]:
    """A bash block's commands: continuation lines joined, comments dropped (quoting checked)."""
    out = []
    for command in text.replace("\\\n", " ").splitlines():
        command = " ".join(shlex.split(command, comments=True))
        if command:
            out.append(command)
    return out


def test_every_doc_is_listed_and_has_examples():
    guides = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")} - {"docs/benchmarks.md", "docs/results.md"}
    readmes = {str(p.relative_to(ROOT)) for p in (ROOT / "src").rglob("README.md")}
    assert guides | readmes | {"README.md"} == set(DOCS)
    assert all(blocks(doc) for doc in DOCS)


@pytest.mark.slow
def test_every_cpu_example_runs_as_written(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("main.py", "convert_c4.py"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("yamls", "data", "bench", "scripts", "results"):
        shutil.copytree(ROOT / name, repo / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "WANDB_MODE": "offline", "CUDA_VISIBLE_DEVICES": ""}
    ran = 0
    for doc in DOCS:
        for number, (lang, cpu, text) in enumerate(blocks(doc)):
            if not cpu:
                continue
            if lang == "python":
                script = tmp_path / f"{doc.replace('/', '_')}-{number}.py"
                script.write_text(text)
                steps = [f"{shlex.quote(sys.executable)} {script}"]
            else:
                steps = commands(text)
            for command in steps:
                done = subprocess.run(command, shell=True, cwd=repo, env=env, capture_output=True, text=True,
                                      timeout=600)
                assert done.returncode == 0, f"{doc}: {command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
                ran += 1
    assert ran >= 20
    assert (repo / "runs" / "report" / "report.md").is_file()
    assert (repo / "runs" / "budget-demo" / "time_markers" / "marker-0.5").is_dir()


def test_gpu_examples_load_their_configs_and_imports():
    from efficient_bert.pretrain.checks import check_components
    from efficient_bert.pretrain.schema import load_config

    checked = 0
    for doc in DOCS:
        for lang, cpu, text in blocks(doc):
            if cpu:
                continue
            if lang == "python":
                tree = ast.parse(text)
                imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
                exec(compile(ast.Module(body=imports, type_ignores=[]), doc, "exec"), {})
                checked += 1
                continue
            for command in commands(text):
                words = shlex.split(command)
                if "main.py" not in words:
                    continue
                args = words[words.index("main.py") + 1:]
                yamls = [ROOT / a for a in args if "=" not in a and a != "..."]
                overrides = [a for a in args if "=" in a]
                check_components(load_config(yamls, overrides))
                checked += 1
    assert checked >= 8
