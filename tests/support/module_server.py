"""One API process on a database of its own for a whole test module, and a global admin key for it: what the
feature modules (credits, owners, allowlists, bulk, import, webhooks) share, so each starts one server, not one
per test."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create
from tests.support.clock import ReferenceClock
from tests.support.databases import endpoints_of, own_database
from tests.support.pipeline import isolated_settings
from tests.support.server import BASE_ROLES, ApiServer


@contextmanager
def module_server(servers: tuple[str, str], stack_info: StackInfo | None, tmp_path_factory: pytest.TempPathFactory,
                  name: str, extra_env: Mapping[str, str] | None = None,
                  roles: Sequence[str] = BASE_ROLES) -> Iterator[ApiServer]:
    """``keyledger serve`` on a fresh database (dropped afterwards) and the session's NATS, ready, on a
    reference clock of its own; ``extra_env`` last; stopped when the block ends."""
    with own_database(servers[0]) as database_url:
        endpoints = endpoints_of(database_url, servers, stack_info)
        api = ApiServer(database_url, servers[1], isolated_settings(), Path(tmp_path_factory.mktemp(name)),
                        extra_env={**endpoints.environment(), **(extra_env or {})}, clock=ReferenceClock(),
                        roles=roles)
        try:
            yield api.wait_ready()
        finally:
            api.stop()


def root_key(server: ApiServer, scopes: Sequence[str] = ("admin:apikeys",)) -> str:
    """A new global key with ``scopes`` that may call as often as the tests do (made with the bootstrap key)."""
    assert server.bootstrap_secret is not None, server.log()
    with httpx.Client(base_url=server.url, timeout=10) as api:
        secret: str = create(api, server.bootstrap_secret, scopes=list(scopes), rate_limit=1_000_000)["secret"]
    return secret
