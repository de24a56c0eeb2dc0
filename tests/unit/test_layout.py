"""The architecture, checked: psycopg only in storage, nats only in messaging, pure domain and
projections, and no import cycles among keyledger's modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.support.paths import REPO_ROOT

PACKAGES = ("domain", "projections", "services")


def modules() -> Iterator[tuple[str, Path]]:
    """Every module of the three code folders as ``(keyledger.dotted.name, path)``."""
    for folder in PACKAGES:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield "keyledger." + ".".join(parts), path


def imports(path: Path) -> set[str]:
    """The modules ``path`` imports anywhere (top level or inside functions), absolute names.
    Imports only for type checking (``if TYPE_CHECKING:``) count too: a cycle there is still a smell."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


GRAPH = {name: imports(path) for name, path in modules()}


def importers_of(library: str) -> set[str]:
    """Our modules that import ``library`` (or one of its submodules)."""
    return {name for name, deps in GRAPH.items()
            if any(dep == library or dep.startswith(library + ".") for dep in deps)}


def test_psycopg_is_imported_only_by_storage() -> None:
    assert importers_of("psycopg") | importers_of("psycopg_pool")
    assert {m for m in importers_of("psycopg") | importers_of("psycopg_pool")
            if not m.startswith("keyledger.services.storage")} == set()


def test_nats_is_imported_only_by_messaging() -> None:
    assert importers_of("nats")
    assert {m for m in importers_of("nats") if not m.startswith("keyledger.services.messaging")} == set()


def test_domain_and_projections_are_pure() -> None:
    allowed_third_party = {"msgspec"}
    for name, deps in GRAPH.items():
        if not name.startswith(("keyledger.domain", "keyledger.projections")):
            continue
        ours = {dep for dep in deps if dep.startswith("keyledger.")}
        assert all(dep.startswith(("keyledger.domain", "keyledger.projections")) for dep in ours), name
        third = {dep.split(".")[0] for dep in deps} - {"keyledger"} - allowed_third_party
        assert all(_is_stdlib(top) for top in third), (name, third)


def test_nothing_imports_the_app_module() -> None:
    assert {name for name, deps in GRAPH.items() if "keyledger.services.http.app" in deps} == set()


def test_devstack_knows_nothing_of_keyledger() -> None:
    for name, deps in GRAPH.items():
        if name.startswith("keyledger.services.devstack"):
            assert {d for d in deps if d.startswith("keyledger.") and not d.startswith("keyledger.services.devstack")} \
                == set(), name


def test_no_import_cycles() -> None:
    known = set(GRAPH)
    edges = {name: {_module_of(dep, known) for dep in deps} - {None, name} for name, deps in GRAPH.items()}
    cycle = _find_cycle(edges)  # type: ignore[arg-type]
    assert cycle is None, " → ".join(cycle or [])


def _module_of(dep: str, known: set[str]) -> str | None:
    """The module of ours ``dep`` names (``pkg.mod.Name`` → ``pkg.mod``); None for other libraries.
    Importing a name from a package's ``__init__`` depends on that package only."""
    while dep:
        if dep in known:
            return dep
        dep = dep.rpartition(".")[0]
    return None


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def _is_stdlib(top: str) -> bool:
    import sys

    return top in sys.stdlib_module_names or top == "__future__"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_prometheus_client_is_imported_only_by_observe() -> None:
    assert importers_of("prometheus_client")
    assert {m for m in importers_of("prometheus_client") if not m.startswith("keyledger.services.observe")} == set()
