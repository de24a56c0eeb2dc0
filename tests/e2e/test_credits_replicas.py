"""Usage credits across API replicas over one store, and their refill on the servers' clock.

Two, then three replicas spend one key's credits at once: together they never grant more than the credits,
and once their leases end (unused for ``KEYLEDGER_CREDIT_LEASE_IDLE_SECONDS``, or the replica stopped) the
key's balance is exactly what they did not grant: nothing lost. A refill resets the balance at the UTC day
boundary: a replica whose clock is a day on (``ahead``) sees it, whether or not the key was used since."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import cycle
from typing import Any

import httpx

from tests.support.api import create, verify
from tests.support.clock import EPOCH, ReferenceClock
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

IDLE = {"KEYLEDGER_CREDIT_LEASE_IDLE_SECONDS": "1"}


def admin_of(server: ApiServer) -> str:
    """An admin key that may poll as often as the tests do (the bootstrap one has the standard tier)."""
    assert server.bootstrap_secret is not None, server.log()
    with httpx.Client(base_url=server.url, timeout=20) as client:
        made = create(client, server.bootstrap_secret, scopes=["admin:apikeys"], rate_limit=1_000_000)
    secret: str = made["secret"]
    return secret


def spend_concurrently(servers: list[ApiServer], secret: str, requests: int) -> list[dict[str, Any]]:
    """``requests`` verifies of ``secret`` (cost 1), spread over ``servers`` and sent 12 at a time."""
    clients = [httpx.Client(base_url=server.url, timeout=20) for server in servers]
    try:
        targets = [client for client, _ in zip(cycle(clients), range(requests), strict=False)]
        with ThreadPoolExecutor(12) as pool:
            return list(pool.map(lambda client: verify(client, secret, "read:data"), targets))
    finally:
        for client in clients:
            client.close()


def remaining(client: httpx.Client, admin: str, key_id: str) -> int:
    shown: int = client.get(f"/v1/keys/{key_id}", headers={"x-api-key": admin}).json()["credits"]["remaining"]
    return shown


def granted_by(answers: list[dict[str, Any]]) -> int:
    assert {answer["code"] for answer in answers} <= {"VALID", "USAGE_EXCEEDED"}
    return sum(answer["code"] == "VALID" for answer in answers)


def back_to(client: httpx.Client, admin: str, key_id: str, expected: int) -> None:
    """Wait until the leases ended (unused for a second) and the key's balance is ``expected``."""
    until_sync(lambda: remaining(client, admin, key_id) == expected, timeout=20,
               what=f"the balance back to {expected} once the leases ended",
               explain=lambda: f"shown {remaining(client, admin, key_id)}")


def check_exact(servers: list[ApiServer], client: httpx.Client, admin: str, credits: int) -> None:
    key = create(client, admin, scopes=["read:data"], rate_limit=1_000_000, credits={"remaining": credits})
    # fewer requests than credits: every one granted, and the replicas' unspent slices come back, to the credit
    first = granted_by(spend_concurrently(servers, key["secret"], credits * 3 // 4))
    assert first == credits * 3 // 4
    back_to(client, admin, key["id"], credits - first)
    # more requests than are left: never more granted than that, and nothing lost once the leases end
    second = granted_by(spend_concurrently(servers, key["secret"], credits - first + 60))
    assert 0 < second <= credits - first
    back_to(client, admin, key["id"], credits - first - second)


def test_two_then_three_replicas_never_grant_more_than_the_credits_and_lose_none(start_server: StartServer
                                                                                ) -> None:
    first = start_server(extra_env=IDLE)
    second = start_server(first.settings, workers=False, extra_env=IDLE)
    admin = admin_of(first)
    with httpx.Client(base_url=first.url, timeout=20) as client:
        check_exact([first, second], client, admin, credits=160)
        third = start_server(first.settings, workers=False, extra_env=IDLE)
        check_exact([first, second, third], client, admin, credits=200)
        # an owner's shared credits, set through one replica, hold on every replica once each follows (~0.5 s)
        assert client.put("/v1/owners/cust-replicas", json={"credits": {"remaining": 40}},
                          headers={"x-api-key": admin}).status_code == 200
        owned = create(client, admin, scopes=["read:data"], rate_limit=1_000_000, owner_id="cust-replicas")
        for replica in (first, second, third):
            with httpx.Client(base_url=replica.url, timeout=20) as on_replica:
                until_sync(lambda: "owner" in verify(on_replica, owned["secret"], "read:data", cost=0),  # noqa: B023
                           timeout=10, what=f"the replica on port {replica.port} to hold the owner's credits")
        shared = granted_by(spend_concurrently([first, second, third], owned["secret"], 70))
        assert 0 < shared <= 40
        # a replica that stops returns what it leased and did not spend (no waiting for idleness)
        key = create(client, admin, scopes=["read:data"], rate_limit=1_000_000, credits={"remaining": 1_000})
        with httpx.Client(base_url=third.url, timeout=20) as on_third:
            assert verify(on_third, key["secret"], "read:data")["code"] == "VALID"
            third.stop()
        assert remaining(client, admin, key["id"]) == 999


def test_a_refill_resets_the_balance_at_the_utc_day_boundary(start_server: StartServer,
                                                              clock: ReferenceClock) -> None:
    today = start_server()
    admin = admin_of(today)
    with httpx.Client(base_url=today.url, timeout=20) as client:
        key = create(client, admin, scopes=["read:data"], rate_limit=1_000_000,
                     credits={"remaining": 2, "refill": {"amount": 5, "interval": "daily"}})
        assert [verify(client, key["secret"], "read:data")["code"] for _ in range(3)] == [
            "VALID", "VALID", "USAGE_EXCEEDED"]
        assert clock.now() < EPOCH + timedelta(hours=23)  # the servers' clocks are still on the first day
        tomorrow = start_server(today.settings, workers=False, ahead=timedelta(days=1))
        with httpx.Client(base_url=tomorrow.url, timeout=20) as next_day:
            shown = next_day.get(f"/v1/keys/{key['id']}", headers={"x-api-key": admin}).json()["credits"]
            assert shown["remaining"] == 5  # refilled at midnight UTC, though the key was not used since
            assert shown["refilled_at"] == "2030-01-02T00:00:00Z"
            answers = [verify(next_day, key["secret"], "read:data") for _ in range(6)]
            assert [a["code"] for a in answers] == ["VALID"] * 5 + ["USAGE_EXCEEDED"]
            assert [a["credits"]["remaining"] for a in answers] == [4, 3, 2, 1, 0, 0]
        # the first day's replica still counts the first day's balance: spent, and none granted twice
        assert verify(client, key["secret"], "read:data")["code"] == "USAGE_EXCEEDED"
