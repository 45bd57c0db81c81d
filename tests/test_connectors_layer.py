"""``connectors`` imports only ``connectors`` (and third-party packages), and the
registry finds connectors through the catalogue: no connector imports it, and it
imports no connector."""

from __future__ import annotations

import ast

from conftest import ROOT

OURS = {"mappings", "sync", "relais", "sandbox", "worker", "bench", "tests"}


def imported(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_connectors_import_nothing_of_ours_above_them() -> None:
    upward = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "connectors").rglob("*.py")
        for name in imported(path)
        if name.split(".")[0] in OURS
    }
    assert not upward, sorted(upward)


def test_registry_and_connectors_do_not_import_each_other() -> None:
    registry = imported(ROOT / "connectors" / "registry.py")
    assert {n for n in registry if n.startswith("connectors.")} <= {
        "connectors.base", "connectors.calendar", "connectors.catalog",
        *(f"connectors.{m}.{n}" for m in ("base", "calendar", "catalog") for n in (
            "ConnectionInfo", "Connector", "Runtime", "CalendarConnector", "provider",
            "providers")),
    }
    users = [p.name for p in (ROOT / "connectors").rglob("*.py")
             if any(n.startswith("connectors.registry") for n in imported(p))]
    assert users == []
