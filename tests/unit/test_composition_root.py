"""One composition root: only ``services.bootstrap`` (and ``keyledger stack``, the command that runs the
embedded stack by hand) decides to start the embedded stack."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO_ROOT

SERVICES = REPO_ROOT / "services"


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return "keyledger." + ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _trees() -> dict[str, ast.AST]:
    return {_module(path): ast.parse(path.read_text(encoding="utf-8")) for path in sorted(SERVICES.rglob("*.py"))}


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_the_composition_root_and_the_stack_command_import_devstack() -> None:
    devstack = "keyledger.services.devstack"
    importers = {name for name, tree in _trees().items() if not name.startswith(devstack)
                 and any(dep == devstack or dep.startswith(devstack + ".") for dep in _imports(tree))}
    assert importers == {"keyledger.services.bootstrap.runtime", "keyledger.services.cli.main"}

