"""The package's public surface and its place as a leaf of the gateway."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.audit

PACKAGE = Path(gateway.audit.__file__).parent


def test_all_is_sorted_and_complete() -> None:
    """``__all__`` is sorted isort-style (constants, classes, functions) and every name exists."""
    names = gateway.audit.__all__
    assert sorted(names, key=lambda n: (not n.isupper(), not n[0].isupper(), n)) == names
    assert [n for n in names if not hasattr(gateway.audit, n)] == []


def test_audit_imports_nothing_else_from_gateway() -> None:
    """gateway.audit is a leaf: the gateway wires it, never the other way round."""
    foreign = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            foreign += [
                f"{path.name}: {m}"
                for m in modules
                if m.startswith("gateway") and not m.startswith("gateway.audit")
            ]
    assert foreign == []
