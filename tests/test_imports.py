"""The package's import graph: no cycle between modules, and in-package imports at the top of modules (a lazy one
only where it guards a heavy optional package)."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "prag"
# in-package imports allowed inside a function: (module, imported module, why)
LAZY_OK = {("cli", "serve"), ("bench", "serve")}  # serve.py needs fastapi, the [serve] extra


def _graph() -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """module -> the package modules it imports; and the (module, imported) pairs imported inside a function."""
    mods = {p.stem for p in PKG.glob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    lazy: set[tuple[str, str]] = set()
    for m in mods:
        tree = ast.parse((PKG / f"{m}.py").read_text())
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 1:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                targets = {n for n in names if n in mods and n != m}
                graph[m] |= targets
                if id(node) in nested:
                    lazy |= {(m, t) for t in targets}
    return graph, lazy


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


@pytest.mark.parametrize("graph, cyclic", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"a"}}, True),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False),
])
def test_the_cycle_finder_itself(graph, cyclic):
    assert (find_cycle(graph) is not None) == cyclic


def test_no_import_cycle_between_modules():
    graph, _ = _graph()
    assert len(graph) > 20, "the package was not found"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_in_package_imports_are_at_the_top():
    _, lazy = _graph()
    assert lazy <= LAZY_OK, f"in-package imports inside functions: {sorted(lazy - LAZY_OK)}"
