"""The layout holds: the library knows nothing of the YAML layer, nothing imports upward, nothing
imports in a cycle, and a plain Composer script that imports an algorithm loads no YAML layer."""

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "efficient_bert"
# each top-level module or package of efficient_bert, by layer: a module imports only its own layer or below
LAYERS = {
    **dict.fromkeys(("lazy", "errors", "files", "checkpoint_folder", "model_card", "process", "progress", "run_files",
                     "yaml_files"),
                    0),  # leaves
    **dict.fromkeys(("kernels", "model", "data", "optim", "budget", "algorithms", "callbacks", "eval"), 1),  # library
    "pretrain": 2,  # the YAML layer
    "tools": 3,  # command-line tools
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The efficient_bert modules a file imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("efficient_bert."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("efficient_bert"):
            for alias in node.names:  # `from efficient_bert.model import auto_classes` imports a module
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
    return {m for m in found if m != "efficient_bert"}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()
            if name not in ("efficient_bert", "efficient_bert.__main__")}  # the public API and the command


def top(module: str) -> str:
    return module.split(".")[1]


def test_every_module_has_a_layer_and_nothing_imports_upward():
    edges = graph()
    assert {top(m) for m in edges} == set(LAYERS), "a new top-level module needs its layer in LAYERS"
    upward = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                    if LAYERS[top(b)] > LAYERS[top(a)])
    assert upward == []


def test_no_import_cycle_between_modules_or_library_packages():
    edges = graph()

    def cycles(nodes: dict[str, set[str]]) -> list[list[str]]:
        found, state = [], {}

        def visit(node: str, path: list[str]) -> None:
            state[node] = "open"
            for nxt in sorted(nodes.get(node, ())):
                if state.get(nxt) == "open":
                    found.append(path[path.index(nxt):] + [nxt])
                elif nxt not in state:
                    visit(nxt, path + [nxt])
            state[node] = "done"

        for node in sorted(nodes):
            if node not in state:
                visit(node, [node])
        return found

    assert cycles(edges) == []
    packages = defaultdict(set)
    for a, targets in edges.items():
        packages[top(a)].update(top(b) for b in targets if top(b) != top(a))
    assert cycles(packages) == []


def test_a_plain_composer_script_loads_none_of_the_yaml_layer():
    probe = ("import sys\nfrom efficient_bert.algorithms import LayerStacking, RHOLoss\nimport efficient_bert.budget\n"
             "import efficient_bert.callbacks, efficient_bert.model, efficient_bert.optim\n"
             "loaded = sorted(m for m in sys.modules if m.startswith(('efficient_bert.pretrain', 'efficient_bert.tools', "
             "'omegaconf')))\nprint(loaded)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
