"""The tests' layers: every test is marked with its folder's (``unit``, ``integration``, ``e2e``, ``faults``), and
unit tests that would start servers are refused. The session and its servers: ``tests.support.fixtures``."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).parent
LAYERS = ("unit", "integration", "e2e", "faults")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its layer (the folder under tests/); unit tests may not use the servers."""
    starting_servers = []
    for item in items:
        parts = item.path.relative_to(TESTS_DIR).parts if item.path.is_relative_to(TESTS_DIR) else ()
        layer = parts[0] if parts and parts[0] in LAYERS else None
        if layer is not None:
            item.add_marker(getattr(pytest.mark, layer))
        if layer == "unit" and "stack_info" in getattr(item, "fixturenames", ()):
            starting_servers.append(item.nodeid)
    if starting_servers:
        raise pytest.UsageError("unit tests must not use Postgres or NATS (move them to tests/integration): "
                                + ", ".join(starting_servers))
