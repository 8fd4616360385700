"""The architecture holds: imports point downward only, no cycles, small files, no grab-bags.

The layers are the ones drawn in ``docs/architecture.md``; a package may import from its own
layer's packages only where the table allows it, and from any layer below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "gradleak"

LAYERS: dict[str, int] = {
    "core": 0,
    "data": 1, "models": 1, "metrics": 1,
    "fl": 2, "generative": 2,
    "inversion": 3,
    "labels": 4,
    "defenses": 5,
    "attacks": 6,
    "experiment": 7,
    "sweep": 8,
    "report": 9,
    "integrations": 10,
    "cli": 11,
    "__init__": 12,   # the facade ``import gradleak as gl``: nothing may import it
}
"""Top-level unit of gradleak → its layer; a unit may import only from units of lower layers."""

MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    """Every gradleak module ``path`` imports, at any depth (function-level imports count too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gradleak"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "gradleak":
                continue
            for alias in node.names:  # ``from gradleak.x import y`` may name the module x.y
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


FILES = sorted(p for p in SRC.rglob("*.py"))
MODULES = {_module_name(p): p for p in FILES}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_every_unit_has_a_layer():
    assert {_unit(m) for m in MODULES} <= set(LAYERS), sorted({_unit(m) for m in MODULES} - set(LAYERS))


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a unit to a unit of the same or a higher layer."""
    bad = []
    for module, targets in graph.items():
        for target in targets:
            src, dst = _unit(module), _unit(target)
            if src != dst and LAYERS[dst] >= LAYERS[src]:
                bad.append(f"{module} -> {target} ({src} layer {LAYERS[src]} -> {dst} layer {LAYERS[dst]})")
    return sorted(bad)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles by depth-first search (edges to a package ``__init__`` are re-exports, skipped)."""
    def edges(module: str) -> list[str]:
        return sorted(t for t in graph[module] if t in graph and not _is_package_init(t))

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges(node):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def _is_package_init(module: str) -> bool:
    path = MODULES.get(module)
    return path is not None and path.name == "__init__.py"


def test_no_upward_or_sideways_import():
    bad = upward_edges(GRAPH)
    assert not bad, "imports that do not point downward:\n" + "\n".join(bad)


def test_no_import_cycle():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_core_imports_nothing_else_from_gradleak():
    bad = {m: sorted(t for t in ts if _unit(t) != "core") for m, ts in GRAPH.items() if _unit(m) == "core"}
    assert not any(bad.values()), bad


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_python_file_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_no_common_grab_bag():
    assert not [p for p in SRC.rglob("*") if p.is_dir() and p.name in ("common", "utils", "misc", "helpers")]


def test_the_checker_catches_an_upward_edge_and_a_cycle(tmp_path):
    """The walk can fail: a function-level upward import is seen, and a planted edge or cycle is found."""
    planted = tmp_path / "m.py"
    planted.write_text("def f():\n    from gradleak.cli.main import main\n")
    assert "gradleak.cli.main" in _imports(planted)
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["gradleak.models.zoo"].add("gradleak.attacks.ig")
    assert upward_edges(graph) == ["gradleak.models.zoo -> gradleak.attacks.ig (models layer 1 -> attacks layer 6)"]
    graph = {k: set(v) for k, v in GRAPH.items()}
    graph["gradleak.inversion.losses"].add("gradleak.inversion.matching")
    assert any(c[0] == c[-1] and "gradleak.inversion.losses" in c for c in find_cycles(graph))
