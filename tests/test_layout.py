"""The package's layout: no import cycles between its modules, and no module over ~300 lines.

Every import is counted, including those inside functions (a lazy import hides a cycle from
Python, not from a reader). A package's ``__init__`` is skipped as an importer: it only
re-exports its own modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "emsiam"
MAX_LINES = 320  # "about 300": a module that needs more is two concepts


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: set[str]) -> set[str]:
    """The emsiam modules one import statement reads."""
    targets: set[str] = set()
    if isinstance(node, ast.Import):
        bases = [a.name for a in node.names]
        names: list[str] = []
    else:
        if node.level:
            pkg = importer.split(".") if is_package else importer.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        bases = [base]
        names = [a.name for a in node.names]
    for base in bases:
        subs = {f"{base}.{n}" for n in names} & known  # "from . import group" names a module
        targets |= subs
        if base in known and (not names or len(subs) < len(names)):  # "from .banks import X": the package
            targets.add(base)
    # a module's own parent packages are loaded before it; importing from them is not a cycle
    return {t for t in targets if not importer.startswith(t + ".")}


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_package = path.name == "__init__.py"
        if is_package:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= _resolve(name, is_package, node, known) - {name}
    # an import of a package reads its __init__, which reads the modules it re-exports
    for name, path in mods.items():
        if path.name == "__init__.py":
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom):
                    graph[name] |= {t for t in _resolve(name, True, node, known) if t.startswith(name + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (c := visit(t)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_cycle_finder_sees_a_known_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_lazy_and_relative_imports():
    g = import_graph()
    assert "emsiam.alternation" in g["emsiam.train"]  # train(cfg) calls fit
    assert "emsiam.config" in g["emsiam.models"]
    assert any(t.startswith("emsiam.banks") for t in g["emsiam.variants.registry"])


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_about_300_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines: split it by concept"
