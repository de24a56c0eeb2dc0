"""A server on a stack of its own, whose Postgres or NATS the test stops: warm verifies keep answering
through a Postgres outage while commands answer 503 at once, the API starts and serves without NATS,
and SIGTERM stops the server within seconds with its Postgres gone."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.support.api import create, verify
from tests.support.own_stack import STALENESS, Stack
from tests.support.wait import until_sync


def test_warm_verifies_keep_answering_through_a_postgres_outage(stack: Stack, tmp_path: Path) -> None:
    api = stack.server(tmp_path).wait_ready()
    try:
        assert api.bootstrap_secret is not None
        admin = api.bootstrap_secret
        with httpx.Client(base_url=api.url, timeout=10) as client:
            key = create(client, admin, scopes=["read:data"], rate_limit=1_000_000)
            assert verify(client, key["secret"], "read:data")["code"] == "VALID"  # warm now
            stack.kill_postgres()
            refused = client.post("/v1/keys", json={"name": "during"}, headers={"x-api-key": admin})
            assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
            away_until = time.monotonic() + 3 * STALENESS  # well past the staleness bound, the store still away
            while time.monotonic() < away_until:
                assert verify(client, key["secret"], "read:data")["code"] == "VALID"
            assert client.get("/v1/keys", headers={"x-api-key": admin}).status_code == 503
            assert verify(client, "kl_" + "A" * 48, "read:data")["code"] in ("MALFORMED", "NOT_FOUND")
            ready = client.get("/readyz")
            assert ready.status_code == 200 and any("event store unreachable" in d for d in ready.json()["degraded"])
            stack.start_postgres()
            until_sync(lambda: client.post("/v1/keys", json={"name": "after"},
                                           headers={"x-api-key": admin}).status_code == 201,
                       timeout=30, what="commands to work again once Postgres is back")
            assert verify(client, key["secret"], "read:data")["code"] == "VALID"
            until_sync(lambda: client.get("/readyz").json()["degraded"] == [], timeout=15,
                       what="/readyz to see the store again")
    finally:
        api.stop()


def test_sigterm_stops_the_server_within_seconds_with_postgres_gone(stack: Stack, tmp_path: Path) -> None:
    api = stack.server(tmp_path).wait_ready()
    try:
        stack.kill_postgres()
        api.process.send_signal(signal.SIGTERM)
        api.process.wait(timeout=15)  # raises if it hangs
    finally:
        api.stop()


def test_the_api_starts_and_serves_without_nats(stack: Stack, tmp_path: Path) -> None:
    stack.stop_nats()
    first = stack.server(tmp_path).wait_ready()
    second = stack.server(tmp_path, workers=False).wait_ready()
    try:
        assert first.bootstrap_secret is not None
        admin = first.bootstrap_secret
        with httpx.Client(base_url=first.url, timeout=10) as one, httpx.Client(base_url=second.url, timeout=10) as two:
            assert "NATS unreachable" in " ".join(one.get("/readyz").json()["degraded"])
            key = create(one, admin, scopes=["read:data"])
            until_sync(lambda: verify(two, key["secret"], "read:data")["code"] == "VALID", timeout=15,
                       what="the other replica to learn the key from the store alone")
            assert one.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
            until_sync(lambda: verify(two, key["secret"], "read:data")["code"] == "REVOKED", timeout=15,
                       what="the other replica to refuse the revoked key, from the store alone")
            stack.start_nats()
            until_sync(lambda: one.get("/readyz").json()["degraded"] == [] and
                       two.get("/readyz").json()["degraded"] == [], timeout=30, what="both to follow NATS again")
    finally:
        second.stop()
        first.stop()
