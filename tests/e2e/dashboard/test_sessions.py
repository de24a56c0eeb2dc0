"""Dashboard sessions across processes (no browser needed): a session made by one API worker process is
honoured by every other worker and by another replica on the same database, and a revoke ends it on all."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.api import sign_in
from tests.support.server import StartServer
from tests.support.wait import until_sync

pytestmark = pytest.mark.e2e


def fresh_connection(url: str, cookie: str) -> httpx.Response:
    """GET the keys page on a new connection (so the kernel picks any worker process)."""
    with httpx.Client(base_url=url, timeout=10, cookies={"keyledger_session": cookie}) as client:
        return client.get("/dashboard/keys")


def test_a_session_is_honoured_by_every_worker_and_replica_until_its_key_is_revoked(
        start_server: StartServer) -> None:
    api = start_server(processes=2)
    admin = api.bootstrap_secret
    assert admin is not None, api.log()
    with httpx.Client(base_url=api.url, timeout=10) as browser:
        signed = sign_in(browser, admin)
        assert signed.status_code == 303, signed.text
        cookie = browser.cookies["keyledger_session"]
    pages = [fresh_connection(api.url, cookie) for _ in range(12)]
    assert [p.status_code for p in pages] == [200] * 12 and all("<h1>API Keys</h1>" in p.text for p in pages)
    replica = start_server(api.settings, workers=False)
    assert fresh_connection(replica.url, cookie).status_code == 200

    key_id = re.search(r'/dashboard/keys/([A-Za-z0-9]{12})"', pages[0].text)
    assert key_id is not None
    revoked = httpx.post(f"{replica.url}/v1/keys/{key_id.group(1)}/revoke", headers={"x-api-key": admin}, timeout=10)
    assert revoked.status_code == 200, revoked.text
    until_sync(lambda: fresh_connection(api.url, cookie).status_code == 303, timeout=15, interval=0.1,
               what="the revoke to end the session")  # the other process learns of it from the store
    ended = [fresh_connection(url, cookie) for url in (api.url, api.url, replica.url)]
    assert all(r.status_code == 303 and r.headers["location"].startswith("/dashboard/sign-in") for r in ended)
