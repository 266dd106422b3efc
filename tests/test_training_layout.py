"""The layout of training/: layers import only downwards, no import cycles, every command is click with --help."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dwp_hub", "training")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    """Every module of the runtime and the training tree (the results folder holds data, not code)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "results" not in path.relative_to(ROOT).parts:
                found[_module_name(path)] = path
    return found


MODULES = _sources()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports anywhere in its file (lazy imports inside functions count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import training.x.y` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer(module: str) -> tuple[int, str]:
    """(rank, group): dwp_hub 0, the training core 1, training.experiments and training.benchmarks 2 (each its own)."""
    if module.split(".")[0] == "dwp_hub":
        return 0, "dwp_hub"
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in ("experiments", "benchmarks") or module in ("training.experiments",
                                                                                 "training.benchmarks"):
        return 2, parts[1]
    return 1, "training"


def _allowed(importer: str, imported: str) -> bool:
    (rank, group), (target_rank, target_group) = layer(importer), layer(imported)
    if imported == "training":  # the package itself: only its docstring
        return importer.startswith("training")
    return target_rank < rank or target_group == group


def test_the_layers_import_only_downwards() -> None:
    upward = sorted(f"{a} imports {b}" for a, deps in GRAPH.items() for b in deps if not _allowed(a, b))
    assert not upward, "imports from a higher layer (dwp_hub < training core < experiments, benchmarks):\n" + \
        "\n".join(upward)


def test_the_layer_rule_refuses_what_it_should() -> None:
    assert not _allowed("training.datasets", "training.experiments.fig2")
    assert not _allowed("training.benchmarks.bench_kl", "training.experiments.nets")
    assert not _allowed("dwp_hub.hub", "training.build")
    assert _allowed("training.experiments.fig2", "training.datasets") and _allowed("training.build", "dwp_hub.atomic")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_no_import_cycles_among_training_modules() -> None:
    training = {a: {b for b in deps if b.startswith("training")} for a, deps in GRAPH.items()
                if a.startswith("training")}
    assert _cycles(training) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _entry_points() -> list[tuple[str, str]]:
    """(module, name of its command) of every runnable training module: a __main__.py, or one ending in
    ``if __name__ == "__main__": NAME()``."""
    found = []
    for name, path in MODULES.items():
        if not name.startswith("training"):
            continue
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                    and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
                calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
                found.append((name, calls[0].func.id if calls else "?"))
    return found


ENTRY_POINTS = _entry_points()


def test_the_entry_points_are_found() -> None:
    names = {module for module, _ in ENTRY_POINTS}
    assert {"training.__main__", "training.experiments.__main__", "training.glyph_variants",
            "training.benchmarks.bench_kl", "training.experiments.dense_vae",
            "training.experiments.estimator_drift"} <= names


def _commands(module: str, attribute: str) -> list[tuple[str, ...]]:
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command), f"{module}.{attribute} is not a click command"
    if isinstance(command, click.Group):
        return [(), *((sub,) for sub in command.commands)]
    return [()]


@pytest.mark.parametrize("module, attribute", ENTRY_POINTS, ids=[m for m, _ in ENTRY_POINTS])
def test_every_training_command_is_click_and_answers_help(module: str, attribute: str) -> None:
    command = getattr(importlib.import_module(module), attribute)
    for path in _commands(module, attribute):
        result = CliRunner().invoke(command, [*path, "--help"])
        assert result.exit_code == 0, (module, path, result.output)
        assert "Usage:" in result.output and "--help" in result.output


STAGED_BY_HAND = {("os", "replace"), ("os", "rename"), ("tempfile", "mkstemp"), ("tempfile", "NamedTemporaryFile")}


def _hand_staged_writes(source: str) -> list[str]:
    """Calls in `source` that stage a file by hand instead of through dwp_hub.atomic."""
    return [f"{node.func.value.id}.{node.func.attr} (line {node.lineno})" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in STAGED_BY_HAND]


def test_training_writes_files_atomically_only_through_dwp_hub_atomic() -> None:
    found = {name: calls for name, path in MODULES.items() if name.startswith("training")
             for calls in [_hand_staged_writes(path.read_text())] if calls}
    assert found == {}, "use dwp_hub.atomic's staged_file / write_bytes_atomic / write_text_atomic / staged_folder"
    assert _hand_staged_writes("import os\nos.replace(tmp, path)\n") == ["os.replace (line 2)"]
