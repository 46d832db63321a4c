"""The package's import graph (every import, inside functions too) has no cycles.

Layers: geometry -> kernels -> api -> formats -> jobs -> distributed/shards -> cli. A cycle, even
through an import inside a function, means two modules cannot be understood (or changed) apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import swt_cli

PACKAGE = Path(swt_cli.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: {modules of swt_cli it imports}}``; a package's ``__init__`` is the package's own name."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}

    def target(name: str) -> str | None:
        while name and name not in files:  # a name imported from a module, not a module
            name = name.rpartition(".")[0]
        return name or None

    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                found = [f"{module}.{alias.name}" for alias in node.names]  # a submodule, else the module itself
            for imported in found:
                hit = target(imported)
                if hit is not None and hit != name:
                    graph[name].add(hit)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_relative_and_function_level_imports():
    graph = import_graph()
    assert "swt_cli.errors" in graph["swt_cli.geometry"]  # relative, at the top
    assert "swt_cli.formats.npy" in graph["swt_cli.formats"]  # relative, inside a function
    assert "swt_cli.api" in graph["swt_cli"]  # the package's __init__ is a module of its own
    assert "swt_cli._version" in graph["swt_cli.cli"]


def test_find_cycle_reports_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_swt_cli_has_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_of_the_package_imports_the_package():
    importers = sorted(name for name, deps in import_graph().items() if "swt_cli" in deps)
    assert importers == [], f"{importers} import swt_cli's __init__"
