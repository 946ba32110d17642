"""The course's floor plan: no import circle inside its packages.

A circle (a imports b, which imports ... a) makes the order of imports matter, forces imports
inside functions to dodge it, and means neither module can be read, tested or moved alone. The
graph is read from the source with `ast`, every `import` counted, including those inside
functions (a lazy import that dodges a circle is still one), relative imports resolved.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("minillm", "kernels")  # the course's packages: the teaching package and the Triton one


def packages(root: Path) -> list[Path]:
    """The package folders: a folder of FOLDERS with an __init__.py, or its sub-folders that have one
    (the Triton package may sit in kernels/ itself or in kernels/<import name>/)."""
    found = []
    for folder in FOLDERS:
        top = root / folder
        found += [top] if (top / "__init__.py").exists() else sorted(p.parent for p in top.glob("*/__init__.py"))
    return found


def module_name(path: Path, package: Path) -> str:
    """minillm/cache.py -> minillm.cache; minillm/checks/__init__.py -> minillm.checks."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the course modules it imports (anywhere in its body), for every .py of the packages."""
    files = {module_name(p, package): p for package in packages(root) for p in sorted(package.rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # from . import x, from ..y import z: relative to this module's package
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # `from p import x` imports the module p.x when there is one, else a name of p
                imported = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            else:
                continue
            # `import minillm.viz` runs minillm.viz; a name inside a module resolves to that module
            for target in imported:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a path a -> ... -> a."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    sys.setrecursionlimit(max(1000, 10 * len(graph)))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, sorted(group)) for group in groups]


def _cycle_through(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One concrete circle inside a strongly connected group: the shortest path back to its first module."""
    start, members = group[0], set(group)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & members):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return group


def test_the_graph_sees_lazy_and_relative_imports():
    """The reader itself: a function-level relative import is an edge (a wrong reader passes anything)."""
    graph = import_graph(ROOT)
    assert "minillm.attention" in graph["minillm.cache"]  # `from .attention import ...` at the top
    assert "minillm.gguf_import" in graph["minillm.pretrained"]  # `from . import gguf_import` in a function
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_inside_the_course_packages():
    found = circles(import_graph(ROOT))
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


if __name__ == "__main__":  # python tests/test_structure.py [ROOT]: print the circles of a checkout
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    for circle in circles(import_graph(root)):
        print(" -> ".join(circle))
