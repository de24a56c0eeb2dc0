"""End-to-end fixtures: real API processes over the session's Postgres and NATS."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.support.server import ApiServer
from tests.support.pipeline import isolated_settings


@pytest.fixture
def api(database_url: str, nats_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    """One API process (with relay + projector) on a fresh database and its own NATS stream."""
    server = ApiServer(database_url, nats_url, isolated_settings(), tmp_path)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def admin(api: ApiServer) -> str:
    """The bootstrap admin secret the API printed on first start."""
    assert api.bootstrap_secret is not None, api.log()
    return api.bootstrap_secret


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    """An HTTP client for the API."""
    with httpx.Client(base_url=api.url, timeout=10) as http:
        yield http
