"""Webhooks that depend on time and on the server's settings, each over servers restarted on one database:
the expiry notices, with the server's clock moved eight days on by a restart (``ahead``); and the address
policy, which a server without ``KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS`` applies both to new endpoints and to
deliveries of endpoints registered before."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from keyledger.services.cli.supervise import ROLES
from tests.support.api import create
from tests.support.clock import ReferenceClock, iso
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync
from tests.support.webhooks import HOOK_ENV, Receiver, arrived, register


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver checking every delivery with the standardwebhooks library."""
    found = Receiver()
    try:
        yield found
    finally:
        found.stop()


def admin_of(server: ApiServer) -> str:
    """The bootstrap admin key of the first server on the database."""
    assert server.bootstrap_secret is not None, server.log()
    return server.bootstrap_secret


def told(receiver: Receiver) -> dict[str, list[tuple[str, Any]]]:
    """By key name: the expiry notices it received, with the threshold of each key.expiring."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for got in receiver.of("expiry"):
        found.setdefault(got.data["key"]["name"], []).append((got.type, got.data.get("threshold_days")))
    return found


def test_expiry_warnings_expiry_and_grace_end_each_arrive_once(start_server: StartServer, clock: ReferenceClock,
                                                               receiver: Receiver) -> None:
    first = start_server(extra_env=HOOK_ENV, roles=ROLES)
    root = admin_of(first)
    with httpx.Client(base_url=first.url, timeout=10) as api:
        register(api, root, receiver, "expiry", events=["key.expiring", "key.expired", "key.grace_ended"])
        now = clock.now()
        for name, days in (("in 29.5 days", 29.5), ("in 5 days", 5), ("in 10 days", 10)):
            create(api, root, name=name, scopes=["read:data"], expires_at=iso(now + timedelta(days=days)))
        rotated = create(api, root, name="rotated", scopes=["read:data"])
        assert api.post(f"/v1/keys/{rotated['id']}/rotate", json={"grace_seconds": 3600},
                        headers={"x-api-key": root}).status_code == 200
        got = arrived(receiver, "expiry", 3, first)  # each created inside a threshold: the nearest one, now
        assert told(receiver) == {"in 29.5 days": [("key.expiring", 30)], "in 5 days": [("key.expiring", 7)],
                                  "in 10 days": [("key.expiring", 30)]}
        assert {g.data["key"]["name"]: g.data["days_left"] for g in got} == {
            "in 29.5 days": 30, "in 5 days": 5, "in 10 days": 10}
    first.stop()

    # the same database, 8 days on
    later = start_server(first.settings, extra_env=HOOK_ENV, ahead=timedelta(days=8), roles=ROLES)
    arrived(receiver, "expiry", 6, later)
    assert told(receiver) == {"in 29.5 days": [("key.expiring", 30)],
                              "in 5 days": [("key.expiring", 7), ("key.expired", None)],
                              "in 10 days": [("key.expiring", 30), ("key.expiring", 7)],
                              "rotated": [("key.grace_ended", None)]}
    expired = next(g for g in receiver.of("expiry") if g.type == "key.expired")
    assert expired.data["key"]["status"] == "expired" and receiver.rejected == []
    grace = next(g for g in receiver.of("expiry") if g.type == "key.grace_ended")
    assert grace.data["key"]["previous_secret_valid_until"] is not None


def test_internal_addresses_are_refused_without_the_allow_setting(start_server: StartServer,
                                                                  receiver: Receiver) -> None:
    allowed = start_server(extra_env=HOOK_ENV, roles=ROLES)
    root = admin_of(allowed)
    with httpx.Client(base_url=allowed.url, timeout=10) as api:
        endpoint = register(api, root, receiver, "moved")  # allowed while the setting held
    allowed.stop()

    strict = start_server(allowed.settings, extra_env={"KEYLEDGER_WEBHOOK_RETRY_FIRST_MS": "50"}, roles=ROLES)
    headers = {"x-api-key": root}
    with httpx.Client(base_url=strict.url, timeout=10) as api:
        for url, why in ((receiver.url("new"), "127.0.0.1 is a loopback"), ("http://localhost:9/", "loopback"),
                         ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local"),
                         ("http://[::1]:9/", "loopback"), ("http://0.0.0.0:9/", "unspecified")):
            refused = api.post("/v1/webhooks", json={"url": url}, headers=headers)
            assert refused.status_code == 400 and refused.json()["code"] == "VALIDATION_ERROR", refused.text
            assert why in refused.json()["error"] and "KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS" in refused.json()["error"]
        create(api, root, name="after the change", scopes=["read:data"])

        def refused_delivery() -> dict[str, Any]:
            items = api.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=headers).json()["items"]
            found: dict[str, Any] = next((d for d in items if d["attempts"] >= 2), {})
            return found

        delivery = until_sync(refused_delivery, timeout=30, what="attempts refused at delivery time",
                              explain=strict.log)
        assert delivery["delivered_at"] is None and delivery["last_status_code"] is None
        assert "127.0.0.1 is a loopback" in delivery["last_error"]
        assert receiver.received == [] and receiver.rejected == []  # the address was checked before any connect
        assert [e["status"] for e in api.get("/v1/webhooks", headers=headers).json()["items"]] == ["active"]
