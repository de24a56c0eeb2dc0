"""What the import contracts (``.importlinter``, checked by ``lint-imports`` in ``make test``) cannot say: the
pure folders import no third-party package but msgspec (a contract forbids named modules, not "all but one")."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import REPO_ROOT

PURE = ("domain", "projections")
ALLOWED_THIRD_PARTY = {"msgspec"}


def modules() -> Iterator[Path]:
    """Every module of the pure folders."""
    for folder in PURE:
        yield from sorted((REPO_ROOT / folder).rglob("*.py"))


def top_level_imports(path: Path) -> set[str]:
    """The top-level names of what ``path`` imports anywhere (also inside functions), absolute imports only."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def third_party(names: set[str]) -> set[str]:
    """The names that are neither keyledger's, nor the standard library's, nor allowed."""
    return {name for name in names if name != "keyledger" and name not in sys.stdlib_module_names
            and name != "__future__" and name not in ALLOWED_THIRD_PARTY}


def test_domain_and_projections_import_no_third_party_but_msgspec() -> None:
    assert list(modules())
    found = {str(path.relative_to(REPO_ROOT)): third_party(top_level_imports(path)) for path in modules()}
    assert {path: names for path, names in found.items() if names} == {}


def test_the_check_sees_a_third_party_import() -> None:
    assert third_party({"msgspec", "datetime", "keyledger", "__future__"}) == set()
    assert third_party({"litestar", "msgspec", "httpx"}) == {"litestar", "httpx"}
