"""The layering rules, read from the source: every arrow points down.

Each module's imports are parsed with `ast` (function-level imports count: a
cycle hidden inside a function is still a cycle). Imports under
`if TYPE_CHECKING:` count too: a type is a dependency, and a cycle that only
type checkers see is still two modules that cannot be read apart (a Protocol
in the lower module breaks it).

The rules are data: a row of `LAYERS` says which of our packages a package may
import, a name in `ACYCLIC` says that its files import each other without a
cycle. A rule that does not hold yet is marked `xfail(strict=True)`, so it
fails loudly the day it starts to hold and the mark must go.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = frozenset({"relais", "sync", "connectors", "mappings", "sandbox", "worker"})


def _todo(*values: object, reason: str) -> object:
    return pytest.param(*values, marks=pytest.mark.xfail(strict=True, reason=reason))


# package -> the packages of ours it may import (itself included).
LAYERS = [
    ("mappings", {"mappings"}),
    ("sandbox", {"sandbox"}),
    ("connectors", {"connectors"}),
    ("sync", {"sync", "connectors", "mappings"}),
    ("worker", {"sync"}),
]

# packages whose files import each other without a cycle.
ACYCLIC = ["mappings", "sandbox", "sync", "relais", "connectors"]


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (resolved to a module file where one exists)
    line: int
    type_only: bool
    name: str | None = None  # the imported name of a `from ... import name`


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    single = ROOT / f"{package}.py"
    if single.exists():
        yield package, single
        return
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, type_only
        if isinstance(child, ast.If) and _is_type_checking(child):
            # the `else:` branch of `if TYPE_CHECKING` runs
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_only
                yield from _walk(stmt, type_only)
            continue
        yield from _walk(child, type_only)


@cache
def imports(package: str) -> tuple[Import, ...]:
    found: list[Import] = []
    for module, path in _modules(package):
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node, type_only in _walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append(Import(module, alias.name, node.lineno, type_only))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")
                    anchor = anchor if is_pkg else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    target = sub if _is_module(sub) else base
                    found.append(Import(module, target, node.lineno, type_only, alias.name))
    return tuple(found)


def _ours(dotted: str) -> str | None:
    top = dotted.split(".")[0]
    return top if top in OURS else None


@pytest.mark.parametrize(("package", "allowed"), LAYERS)
def test_package_imports_only_lower_layers(package: str, allowed: set[str]) -> None:
    wrong = sorted(
        f"{i.source}:{i.line} imports {i.target}"
        for i in imports(package)
        if (top := _ours(i.target)) is not None and top not in allowed
    )
    assert not wrong, f"{package} may import only {sorted(allowed)}:\n" + "\n".join(wrong)


# third-party packages of the shell: the engine never speaks HTTP to its callers
# (it raises codes; ``relais.api`` maps them to statuses).
SHELL_ONLY = ("fastapi", "starlette", "uvicorn")


@pytest.mark.parametrize("package", ["sync", "worker", "connectors", "mappings"])
def test_below_the_shell_no_web_framework(package: str) -> None:
    wrong = sorted(
        f"{i.source}:{i.line} imports {i.target}"
        for i in imports(package)
        if i.target.split(".")[0] in SHELL_ONLY
    )
    assert not wrong, f"{package} may not import {', '.join(SHELL_ONLY)}:\n" + "\n".join(wrong)


def cycles(package: str) -> list[list[str]]:
    """Strongly connected components of more than one file (or a file importing itself)."""
    graph: dict[str, set[str]] = {}
    for i in imports(package):
        if not i.target.startswith(package) or i.target == i.source:
            continue
        graph.setdefault(i.source, set()).add(i.target)
    # Tarjan, iterative enough for a package of modest size.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
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
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_cycle_between_files(package: str) -> None:
    found = cycles(package)
    assert not found, f"import cycles in {package}:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_parser_sees_function_level_and_relative_imports() -> None:
    # The rules above are only as good as the parser: check it on a known shape.
    tree = ast.parse(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from sync.store.db import x\n"
        "def f():\n    import sync.delivery\n"
    )
    seen = [
        (getattr(n, "module", None) or n.names[0].name, t)
        for n, t in _walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
    ]
    assert ("sync.store.db", True) in seen
    assert ("sync.delivery", False) in seen


@pytest.mark.parametrize("package", ["mappings", "sandbox"])
def test_private_names_stay_in_their_module(package: str) -> None:
    # `from mappings.fieldmap import _View` couples two files through a name that
    # promises to be local: make it public (or move it) instead.
    crossing = sorted(
        f"{i.source}:{i.line} imports {i.target}.{i.name}"
        for i in imports(package)
        if i.name
        and i.name.startswith("_")
        and not i.name.startswith("__")
        and _ours(i.target) is not None
        and i.target != i.source
    )
    assert not crossing, "private names used across modules:\n" + "\n".join(crossing)


def _classes(package: str) -> dict[str, str]:
    return {
        node.name: module
        for module, path in _modules(package)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_")
    }


def test_configuration_classes_do_not_reuse_engine_names() -> None:
    # `Escalation` the configured ladder vs `Escalation` the database row: an import
    # line decided which one a module meant. Configuration names are their own.
    config = _classes("mappings")
    clashes = sorted(
        f"{name}: {config[name]} and {module}"
        for package in ("sync", "relais", "connectors")
        for name, module in _classes(package).items()
        if name in config
    )
    assert not clashes, "class names defined twice:\n" + "\n".join(clashes)
