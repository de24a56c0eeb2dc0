"""``InProcessVerifier`` beside a real ``keyledger serve``: the same answers as ``POST /v1/verify``, the same
rate limit, its own usage events, and revocations seen as an API replica sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from keyledger.domain.errors import ValidationError
from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.inprocess.verifier import InProcessVerifier
from keyledger_client.asgi import KeyledgerMiddleware, Route, verify_result
from tests.support.api import create, verify
from tests.support.clock import ReferenceClock
from tests.support.server import ApiServer
from tests.support.wait import until

SITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
COMPARED = ("valid", "code", "reason", "key_id", "organization_id", "scopes", "granted_by", "expires_at")


def local_verifier(api: ApiServer, endpoints: Endpoints, clock: ReferenceClock, tmp_path: Path) -> InProcessVerifier:
    """With what an API replica gets: the application's database role and the api role's NATS user."""
    settings = msgspec.structs.replace(api.settings, clock_start=clock.now())  # the servers' time
    return InProcessVerifier(nats_url=endpoints.nats_url_for("api"), database_url=endpoints.database_url,
                             settings=settings, name="svc", spool_dir=tmp_path / "spool")


def fields(answer: Any) -> dict[str, Any]:
    body = answer if isinstance(answer, dict) else msgspec.to_builtins(answer)
    return {name: body[name] for name in COMPARED}


async def test_it_answers_as_the_api_does(api: ApiServer, client: httpx.Client, admin: str, auditor: str,
                                          endpoints: Endpoints, clock: ReferenceClock,
                                          tmp_path: Path) -> None:
    key = create(client, admin, organization_id="org-1", access=SITE_A, rate_limit=5)
    wrong = key["secret"][:-4] + "AAAA"
    async with local_verifier(api, endpoints, clock, tmp_path) as local:
        for args in ((key["secret"], "read:data", "site-a"), (key["secret"], "read:data", "site-b"),
                     (wrong, "read:data", "site-a"), ("kl_nonsense", "read:data", None)):
            here = await local.verify(args[0], args[1], website_id=args[2], ip="203.0.113.9", user_agent="in-proc")
            there = verify(client, args[0], args[1], website_id=args[2])
            assert fields(here) == fields(there), args
        codes = [(await local.verify(key["secret"], "read:data", website_id="site-a")).code for _ in range(5)]
        # 4 counted above, 2 of them here: with the budget shared through Postgres one more is VALID; even a
        # process that had to fall back to counting alone never passes the key's limit of 5
        assert codes.count("VALID") <= 3 and codes[-1] == "RATE_LIMITED", codes
        with pytest.raises(ValidationError):
            await local.verify(key["secret"], "read:everything")

    def stored() -> set[tuple[str, str]]:  # flushed when it stopped; the audit sink stores them a moment later
        records = client.get("/v1/audit", params={"key_id": key["id"], "kind": "usage", "limit": 1000},
                             headers={"x-api-key": auditor}).json()["items"]
        mine = {(r["outcome"], r["ip"]) for r in records if r["user_agent"] == "in-proc"}
        return mine if mine >= {("VALID", "203.0.113.9"), ("FORBIDDEN", "203.0.113.9")} else set()
    await until(stored, timeout=15, what="the in-process verifier's usage events in the audit trail")


async def test_its_usage_events_store_what_the_caller_typed(api: ApiServer, client: httpx.Client, admin: str,
                                                            auditor: str, endpoints: Endpoints, clock: ReferenceClock,
                                                            tmp_path: Path) -> None:
    """A NUL in the website asked for (quoted by the FORBIDDEN reason) or in the user agent is stored as U+FFFD,
    not refused by Postgres (which would set the event aside)."""
    key = create(client, admin, access=SITE_A)
    async with local_verifier(api, endpoints, clock, tmp_path) as local:
        answer = await local.verify(key["secret"], "read:data", website_id="site-\x00b", user_agent="nul\x00agent")
        assert answer.code == "FORBIDDEN" and "site-\x00b" in answer.reason

    def stored() -> list[dict[str, Any]]:
        records = client.get("/v1/audit", params={"key_id": key["id"], "kind": "usage"},
                             headers={"x-api-key": auditor}).json()["items"]
        return [r for r in records if r["outcome"] == "FORBIDDEN"]
    record = (await until(stored, timeout=15, what="the FORBIDDEN verify in the audit trail"))[0]
    assert (record["website_id"], record["user_agent"]) == ("site-\ufffdb", "nul\ufffdagent")
    assert "site-\ufffdb" in record["reason"] and "\x00" not in record["reason"]


async def test_a_revocation_reaches_it_like_an_api_replica(api: ApiServer, client: httpx.Client, admin: str,
                                                           endpoints: Endpoints, clock: ReferenceClock,
                                                           tmp_path: Path) -> None:
    key = create(client, admin, access=SITE_A)
    async with local_verifier(api, endpoints, clock, tmp_path) as local:
        assert (await local.verify(key["secret"], "read:data", website_id="site-a")).valid
        made_later = create(client, admin, access=SITE_A)  # a key created after it started: followed live

        async def known() -> bool:
            return (await local.verify(made_later["secret"], "read:data", website_id="site-a")).valid
        await until(known, timeout=10, what="a key created later in the in-process cache")
        assert client.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200

        async def revoked() -> bool:
            return (await local.verify(key["secret"], "read:data", website_id="site-a")).code == "REVOKED"
        await until(revoked, timeout=10, what="the revocation in the in-process cache")


async def test_the_asgi_middleware_can_use_it_instead_of_http(api: ApiServer, client: httpx.Client, admin: str,
                                                              endpoints: Endpoints,
                                                              clock: ReferenceClock, tmp_path: Path) -> None:
    key = create(client, admin, access=SITE_A)
    seen: list[str | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:  # a bare ASGI app
        result = verify_result(scope)
        seen.append(result.key_id if result else None)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with local_verifier(api, endpoints, clock, tmp_path) as local:
        protected = KeyledgerMiddleware(app, verifier=local, scope="read:data",
                                        routes=[Route("/sites/{site}", website_id="site")])
        transport = httpx.ASGITransport(protected)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc.test") as http:
            ok = await http.get("/sites/site-a", headers={"x-api-key": key["secret"]})
            assert ok.status_code == 200 and ok.headers["x-ratelimit-limit"] == "100"
            refused = await http.get("/sites/site-b", headers={"x-api-key": key["secret"]})
            assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")
    assert seen == [key["id"]]
