"""The layering of the product, read from the source with `ast` (nothing is imported).

Two rules:

- The product packages (broker, signaling, media, web) import none of the tools: `bench`,
  `client` (commands found through entry points) and `tests`. Every import counts, at the top
  of a module or inside a function, and under `if TYPE_CHECKING:` too (a tool named in the
  product's annotations is still a dependency of the product).
- The modules of `signaling` import each other without a cycle. Imports inside functions
  count (a lazy import does not make a cycle go away, it only delays it); imports under
  `if TYPE_CHECKING:` do not, because they are never run: they name a type for the checker
  and cannot make one module wait for another half-initialised one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("broker", "signaling", "media", "web")
TOOLS = ("bench", "client", "tests")
ACYCLIC = ("signaling",)
"""Packages whose modules must not import each other in a cycle."""


@dataclass(frozen=True)
class Import:
    """One import statement's target module, as written in `source`."""

    source: str
    target: str
    line: int
    type_checking: bool
    """Under `if TYPE_CHECKING:` (only the type checker runs it)."""


# --- reading the source ------------------------------------------------------------------------
def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: str, root: Path = ROOT) -> dict[str, Path]:
    """Every module of `package` (sub-packages included): dotted name -> file."""
    return {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute name a `from ... import` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(source: str, module: str, *, is_package: bool = False,
               known: Iterable[str] = ()) -> list[Import]:
    """The imports of one module's source, wherever they are (functions, classes, `if`s).

    `from pkg import name` targets `pkg.name` when that is one of the `known` modules (a
    submodule imported by name), else `pkg`.
    """
    known = set(known)
    found: list[Import] = []

    def visit(node: ast.AST, type_checking: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_checking)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module, alias.name, node.lineno, type_checking))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(module, sub if sub in known else base, node.lineno,
                                    type_checking))
        for child in ast.iter_child_nodes(node):
            visit(child, type_checking)

    visit(ast.parse(source), False)
    return found


def product_imports() -> Iterator[Import]:
    modules = {name: path for package in PRODUCT for name, path in package_modules(package).items()}
    for name, path in modules.items():
        yield from imports_of(path.read_text(encoding="utf-8"), name,
                              is_package=path.name == "__init__.py", known=modules)


# --- cycles ---------------------------------------------------------------------------------
def import_graph(imports: Iterable[Import], package: str) -> dict[str, set[str]]:
    """`package.*` -> the `package.*` modules it imports when run (TYPE_CHECKING left out)."""
    inside = (package, f"{package}.")
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source.startswith(inside):
            graph.setdefault(imp.source, set())
            if imp.target.startswith(inside) and not imp.type_checking:
                graph[imp.source].add(imp.target)
                graph.setdefault(imp.target, set())
    return graph


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (each a list of modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def cycle_in(graph: Mapping[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module: [a, b, ..., a]."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    todo = [start]
    while todo:  # breadth first: the shortest way back to `start`
        node = todo.pop(0)
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*paths[node], start]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                todo.append(nxt)
    raise AssertionError(f"no cycle in {component}")


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (a self-import included)."""
    return [cycle_in(graph, c) for c in strongly_connected(graph)
            if len(c) > 1 or c[0] in graph.get(c[0], ())]


# --- the rules -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return list(product_imports())


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_imports_no_tool(package: str, imports: list[Import]) -> None:
    tools = tuple(f"{t}." for t in TOOLS)
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in imports
           if i.source.split(".")[0] == package
           and (i.target in TOOLS or i.target.startswith(tools))]
    assert not bad, f"{package} must not import {', '.join(TOOLS)}:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ACYCLIC)
def test_modules_import_each_other_without_a_cycle(package: str,
                                                   imports: list[Import]) -> None:
    graph = import_graph(imports, package)
    assert len(graph) > 5, f"{package}: its modules were not found"
    found = cycles(graph)
    assert not found, f"{package} has import cycles:\n" + "\n".join(
        " -> ".join(cycle) for cycle in found)


# --- the reader itself, on small sources -----------------------------------------------------
KNOWN = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.d"}


@pytest.mark.parametrize(
    ("module", "is_package", "source", "expected"),
    [
        ("pkg.a", False, "import pkg.b", [("pkg.b", False)]),
        ("pkg.a", False, "from pkg import b", [("pkg.b", False)]),
        ("pkg.a", False, "from pkg.b import thing", [("pkg.b", False)]),
        ("pkg.a", False, "from . import b", [("pkg.b", False)]),
        ("pkg.a", False, "from .b import thing", [("pkg.b", False)]),
        ("pkg.sub.d", False, "from ..c import thing", [("pkg.c", False)]),
        ("pkg.sub", True, "from . import d", [("pkg.sub.d", False)]),
        ("pkg.sub", True, "from .. import a", [("pkg.a", False)]),
        ("pkg.a", False, "def f():\n    from pkg import c\n", [("pkg.c", False)]),
        ("pkg.a", False, "class K:\n    def m(self):\n        import pkg.c\n", [("pkg.c", False)]),
        ("pkg.a", False, "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                         "    from pkg import b\nelse:\n    from pkg import c\n",
         [("typing", False), ("pkg.b", True), ("pkg.c", False)]),
        ("pkg.a", False, "import typing\nif typing.TYPE_CHECKING:\n    import bench.soak\n",
         [("typing", False), ("bench.soak", True)]),
    ],
)
def test_imports_are_read_wherever_they_are(module: str, is_package: bool, source: str,
                                            expected: list[tuple[str, bool]]) -> None:
    got = imports_of(source, module, is_package=is_package, known=KNOWN)
    assert [(i.target, i.type_checking) for i in got] == expected


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ({"pkg.a": "from pkg import b", "pkg.b": "from pkg import c", "pkg.c": ""}, []),
        ({"pkg.a": "from pkg import b", "pkg.b": "def f():\n    from pkg import a\n"},
         [["pkg.a", "pkg.b", "pkg.a"]]),
        ({"pkg.a": "from pkg import b", "pkg.b": "from pkg import c", "pkg.c": "import pkg.a"},
         [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]),
        ({"pkg.a": "import pkg.a"}, [["pkg.a", "pkg.a"]]),
        ({"pkg.a": "from pkg import b",
          "pkg.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"},
         []),
    ],
    ids=["chain", "lazy-import-cycle", "three-cycle", "self-import", "type-checking-only"],
)
def test_a_cycle_is_found_and_named(sources: dict[str, str],
                                    expected: list[list[str]]) -> None:
    found = [i for name, text in sources.items() for i in imports_of(text, name, known=KNOWN)]
    assert cycles(import_graph(found, "pkg")) == expected
