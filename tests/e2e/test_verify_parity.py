"""One verify flow behind three transports: the same table of requests through ``POST /v1/verify``,
``GET /v1/forward-auth`` (called as a gateway calls it) and the in-process verifier gets the same code,
reason and rate-limit state, and leaves the same usage event (read back through ``/v1/audit``), field by
field: on a healthy stack, through a Postgres outage (a warm key stays VALID on all three, past the
staleness bound) and with NATS gone.

Each transport verifies keys of its own, created alike: a rate limit is per key, and the in-process
verifier spends its own leases of a key's budget. So a usage event's ``key_id`` and ``start`` are compared
as "the key this transport was given". Left out of the comparison, because they differ by transport by
design: :data:`NOT_COMPARED`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from keyledger.domain import token
from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.config import Settings
from keyledger.services.inprocess.verifier import InProcessVerifier
from tests.support.api import create
from tests.support.clock import ReferenceClock, iso
from tests.support.own_stack import STALENESS, Stack
from tests.support.server import ApiServer
from tests.support.wait import until

NOT_COMPARED = ("id", "at", "action", "caller", "caller_ip", "request_id")
"""Usage-event fields that name the transport, not the decision: the event's own id and time, the call
(``verify`` or ``forward-auth GET /parity``), who called and from where, and the request id (HTTP only).
(``/v1/audit`` does not show ``caller`` and ``caller_ip``; they are listed for completeness.)"""
TRANSPORTS = ("http", "forward-auth", "in-process")
STATUS = {"VALID": 200, "MALFORMED": 401, "NOT_FOUND": 401, "REVOKED": 401, "EXPIRED": 401, "FORBIDDEN": 403,
          "RATE_LIMITED": 429, "UNAVAILABLE": 503}  # forward-auth's answer for each code

SITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
ANALYTICS = [{"resource": "analytics_data", "scopes": ["read:analytics"]}]
IP, AGENT = "203.0.113.7", "client/2.0 (parity)"  # the end client, as the caller forwards it
NETWORK = "203.0.113.0/24"  # the end client's
UNKNOWN = token.generate(os.urandom)  # well formed, its key id unknown: also the token a hostile user agent carries
_ids = itertools.count()


def wrong_secret(secret: str) -> str:
    """``secret``'s token with another secret (its checksum right): well formed, the key known, refused."""
    parsed = token.parse(secret)
    other = parsed.secret[:-1] + ("A" if parsed.secret[-1] != "A" else "B")
    return token.format_token(parsed.prefix, parsed.key_id, other)


@dataclass(frozen=True)
class Case:
    """One row: what each transport's key is created with (None: the ``token`` is given as it is), the
    token presented (``"secret"``, ``"wrong"`` or a literal), and the request."""

    name: str
    scope: str
    key: dict[str, Any] | None = None
    token: str = "secret"
    website_id: str | None = None
    data: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    calls: int = 1
    revoked: bool = False


TABLE = [
    Case("valid, with the client's ip and user agent", "read:data", {"organization_id": "org-1", "access": SITE_A},
         website_id="site-a", ip=IP, user_agent=AGENT),
    Case("valid, nothing forwarded", "read:data", {"scopes": ["read:data"]}),
    Case("wrong secret", "read:data", {"access": SITE_A}, token="wrong", website_id="site-a", ip=IP, user_agent=AGENT),
    Case("malformed", "read:data", token="kl_nonsense", website_id="site-a", ip=IP, user_agent=AGENT),
    Case("unknown key id", "read:data", token=UNKNOWN, ip=IP, user_agent=AGENT),
    Case("revoked", "read:data", {"access": SITE_A}, website_id="site-a", revoked=True),
    Case("forbidden scope", "write:data", {"access": SITE_A}, website_id="site-a", ip=IP, user_agent=AGENT),
    Case("forbidden website", "read:data", {"organization_id": "org-1", "access": SITE_A}, website_id="site-b", ip=IP,
         user_agent=AGENT),
    Case("granted data kind", "read:analytics", {"access": ANALYTICS}, data="analytics_data"),
    Case("refused data kind", "read:analytics", {"access": ANALYTICS}, data="error_data", ip=IP, user_agent=AGENT),
    Case("rate limited", "read:data", {"scopes": ["read:data"], "rate_limit": 1}, calls=2, ip=IP, user_agent=AGENT),
    Case("hostile text: NUL in the website, a token in the user agent", "read:data", {"access": SITE_A},
         website_id="site-\x00b", ip=IP, user_agent=f"agent/1 {UNKNOWN}"),
    Case("inside its allowed networks", "read:data", {"scopes": ["read:data"], "allowed_networks": [NETWORK]}, ip=IP,
         user_agent=AGENT),
    Case("outside its allowed networks", "read:data", {"scopes": ["read:data"], "allowed_networks": ["192.0.2.0/24"]},
         ip=IP, user_agent=AGENT),
    Case("allowed networks, no ip named", "read:data", {"scopes": ["read:data"], "allowed_networks": [NETWORK]}),
]
EXPIRED = Case("expired", "read:data", {"access": SITE_A}, website_id="site-a", ip=IP, user_agent=AGENT)
WARM = Case("warm key", "read:data", {"scopes": ["read:data"], "rate_limit": 1_000_000}, ip=IP, user_agent=AGENT)
WHILE_AWAY = [WARM, *(case for case in TABLE if case.name in (
    "wrong secret", "malformed", "unknown key id", "revoked", "forbidden website", "refused data kind"))]


@dataclass
class Seen:
    """What one transport answered to one call."""

    code: str | None  # forward-auth's refusals carry no code: it is read from their usage event
    reason: str | None  # the same (forward-auth shows it only when it allows)
    ratelimit: tuple[int, int, int] | None
    status: int = 200
    request_id: str | None = None  # HTTP calls; the in-process verifier's events are found by their order
    event: dict[str, Any] = field(default_factory=dict)


class Parity:
    """Runs cases through the three transports and compares what each answered and recorded."""

    def __init__(self, http: httpx.AsyncClient, local: InProcessVerifier, keys: dict[tuple[str, str], Any]) -> None:
        self.http, self.local, self.keys = http, local, keys
        self.seen: list[tuple[Case, dict[str, Seen]]] = []
        self.local_calls: list[Seen] = []

    async def ask(self, case: Case) -> dict[str, Seen]:
        """``case`` through every transport (``calls`` times each); the last answers, compared already."""
        for _ in range(case.calls):
            answers = {name: await self._call(name, case) for name in TRANSPORTS}
            self.seen.append((case, answers))
        return answers

    def presented(self, case: Case, transport: str) -> str:
        if case.key is None:
            return case.token
        secret = str(self.keys[(case.name, transport)]["secret"])
        return wrong_secret(secret) if case.token == "wrong" else secret

    async def _call(self, transport: str, case: Case) -> Seen:
        presented = self.presented(case, transport)
        asked = {name: value for name, value in (("website_id", case.website_id), ("data", case.data)) if value}
        request_id = f"parity-{next(_ids)}-{os.urandom(4).hex()}"
        if transport == "in-process":
            answer = await self.local.verify(presented, case.scope, website_id=case.website_id, data=case.data,
                                             ip=case.ip, user_agent=case.user_agent)
            body = msgspec.to_builtins(answer)
            seen = Seen(body["code"], body["reason"], _rate(body["ratelimit"]))
            self.local_calls.append(seen)
            return seen
        if transport == "http":
            forwarded = {name: value for name, value in (("ip", case.ip), ("user_agent", case.user_agent)) if value}
            response = await self.http.post("/v1/verify", json={"key": presented, "scope": case.scope, **asked,
                                                                 **forwarded}, headers={"x-request-id": request_id})
            assert response.status_code == 200, response.text
            body = response.json()
            return Seen(body["code"], body["reason"], _rate(body["ratelimit"]), request_id=request_id)
        headers = {"x-api-key": presented, "user-agent": case.user_agent or "", "x-request-id": request_id,
                   "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/parity"}  # as a gateway sets them
        if case.ip:
            headers["X-Forwarded-For"] = case.ip
        response = await self.http.get("/v1/forward-auth", params={"scope": case.scope, **asked}, headers=headers)
        rate = _header_rate(response.headers)
        if response.status_code == 200:
            body = response.json()
            assert (body["key_id"], rate) == (response.headers["x-keyledger-key-id"], _rate(body["ratelimit"]))
            return Seen(body["code"], body["reason"], rate, request_id=request_id)
        assert response.json()["success"] is False, response.text
        return Seen(None, None, rate, status=response.status_code, request_id=request_id)

    async def read_back(self, auditor: str, timeout: float = 30) -> None:
        """Find every call's usage event in ``/v1/audit`` (waiting for the audit sink to store them)."""
        async def found() -> bool:
            records = await usage_records(self.http, auditor)
            if records is None:  # the store just came back: the server said so (503), ask again
                return False
            by_request = {record["request_id"]: record for record in records if record["request_id"]}
            local = sorted((record for record in records if record["request_id"] is None),
                           key=lambda record: datetime.fromisoformat(record["at"]))
            http = [seen for _, answers in self.seen for name, seen in answers.items() if name != "in-process"]
            if len(local) < len(self.local_calls) or any(seen.request_id not in by_request for seen in http):
                return False
            assert len(local) == len(self.local_calls), "an in-process verify left more than one usage event"
            for seen in http:
                seen.event = by_request[seen.request_id]
            for seen, record in zip(self.local_calls, local, strict=True):
                seen.event = record
            return True
        await until(found, timeout=timeout, interval=0.2, what="every call's usage event in /v1/audit")

    def compare(self) -> None:
        """Each call's code, reason, rate state and usage event: the same through every transport."""
        assert self.seen
        for case, answers in self.seen:
            views = {name: self._view(case, name, seen) for name, seen in answers.items()}
            for name in TRANSPORTS[1:]:
                shared = {part: views["http"][part] for part in views[name]}
                assert views[name] == shared, f"{case.name}: {name} differs from POST /v1/verify"

    def _view(self, case: Case, transport: str, seen: Seen) -> dict[str, Any]:
        event = {name: value for name, value in seen.event.items() if name not in NOT_COMPARED}
        key = self.keys.get((case.name, transport))
        if key is not None:  # "the key this transport was given"; its start first, which holds its id
            event = {name: value.replace(key["start"], "<start>").replace(key["id"], "<key id>")
                     if isinstance(value, str) else value for name, value in event.items()}
        if seen.code is None:  # forward-auth refused: the status must be that of the code it recorded
            assert seen.status == STATUS[event["outcome"]], (case.name, seen.status, event["outcome"])
            return {"code": event["outcome"], "ratelimit": seen.ratelimit, "event": event}
        assert seen.code == event["outcome"]
        return {"code": seen.code, "reason": seen.reason, "ratelimit": seen.ratelimit, "event": event}


def _rate(body: dict[str, int] | None) -> tuple[int, int, int] | None:
    return None if body is None else (body["limit"], body["remaining"], body["reset"])


def _header_rate(headers: httpx.Headers) -> tuple[int, int, int] | None:
    if "x-ratelimit-limit" not in headers:
        return None
    return (int(headers["x-ratelimit-limit"]), int(headers["x-ratelimit-remaining"]),
            int(headers["x-ratelimit-reset"]))


async def usage_records(http: httpx.AsyncClient, auditor: str) -> list[dict[str, Any]] | None:
    """Every usage record stored so far; None while the server answers 503 (its store is unreachable, e.g.
    in the moments after Postgres restarted and before its pool reconnected)."""
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        response = await http.get("/v1/audit", params={"kind": "usage", "limit": 1000, **({"cursor": cursor} if cursor
                                                                                         else {})},
                                  headers={"x-api-key": auditor})
        if response.status_code == 503:
            return None
        assert response.status_code == 200, response.text
        page = response.json()
        records += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return records


def create_keys(client: httpx.Client, admin: str, cases: list[Case],
                extra: Callable[[Case], dict[str, Any]] = lambda case: {}) -> dict[tuple[str, str], Any]:
    """A key per case and transport, created alike (and revoked, for the cases that want it)."""
    keys: dict[tuple[str, str], Any] = {}
    for case in cases:
        if case.key is None:
            continue
        for transport in TRANSPORTS:
            key = keys[(case.name, transport)] = create(client, admin, **case.key, **extra(case))
            if case.revoked:
                revoked = client.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin})
                assert revoked.status_code == 200, revoked.text
    return keys


@asynccontextmanager
async def in_process(endpoints: Endpoints, settings: Settings, clock: ReferenceClock,
                     spool: Path) -> AsyncIterator[tuple[InProcessVerifier, float]]:
    """An in-process verifier with what an API replica gets (the app's database role, the api NATS user),
    on the test's time; and how long it took to start (how far its clock may read behind the reference)."""
    settings = msgspec.structs.replace(settings, clock_start=clock.now())
    started = clock.elapsed()
    async with InProcessVerifier(nats_url=endpoints.nats_url_for("api"), database_url=endpoints.database_url,
                                 settings=settings, name="parity", spool_dir=spool) as local:
        yield local, clock.elapsed() - started


async def test_every_transport_answers_and_records_alike(api: ApiServer, client: httpx.Client, admin: str,
                                                         auditor: str, endpoints: Endpoints, clock: ReferenceClock,
                                                         tmp_path: Path) -> None:
    expiry = clock.now() + timedelta(seconds=3)
    keys = create_keys(client, admin, [*TABLE, EXPIRED],
                       lambda case: {"expires_at": iso(expiry)} if case is EXPIRED else {})
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
        async with in_process(endpoints, api.settings, clock, tmp_path / "spool") as (local, local_lag):
            lag = max(api.startup_seconds, local_lag)  # no clock reads further behind the reference than this
            clock.shared_window(needed=25, lag=lag)  # every key's rate window: the same for the three
            parity = Parity(http, local, keys)
            for case in TABLE:
                await parity.ask(case)
            await until(lambda: clock.now() - timedelta(seconds=lag) > expiry, timeout=15,
                        what="every clock past the expiry")
            answers = await parity.ask(EXPIRED)
            assert {seen.code for seen in answers.values()} <= {"EXPIRED", None}
        await parity.read_back(auditor)  # the in-process verifier flushed its usage events as it stopped
    parity.compare()


@asynccontextmanager
async def parity_on(stack: Stack, clock: ReferenceClock, tmp_path: Path) -> AsyncIterator[tuple[Parity, str]]:
    """A server and an in-process verifier on ``stack``, keys for :data:`WHILE_AWAY` (the warm one verified
    once through each transport), all in one rate window for a while; the parity and an auditor's key."""
    api = stack.server(tmp_path, clock=clock).wait_ready()
    try:
        assert api.bootstrap_secret is not None, api.log()
        with httpx.Client(base_url=api.url, timeout=10) as client:
            keys = create_keys(client, api.bootstrap_secret, WHILE_AWAY)
            auditor = create(client, api.bootstrap_secret, scopes=["read:export"], rate_limit=1_000_000)["secret"]
        settings = msgspec.structs.replace(stack.settings, max_staleness=STALENESS)
        async with in_process(stack.endpoints, settings, clock, tmp_path / "spool") as (local, local_lag), \
                httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            clock.shared_window(needed=30, lag=max(api.startup_seconds, local_lag))
            parity = Parity(http, local, keys)
            answers = await parity.ask(WARM)
            assert {seen.code for seen in answers.values()} == {"VALID"}
            yield parity, auditor
    finally:
        api.stop()


@pytest.mark.timeout(240)
async def test_a_warm_key_stays_valid_everywhere_through_a_postgres_outage(stack: Stack, clock: ReferenceClock,
                                                                          tmp_path: Path) -> None:
    async with parity_on(stack, clock, tmp_path) as (parity, auditor):
        stack.kill_postgres()
        # every cache's last confirmation by the store (none after the kill) ages past the staleness bound;
        # meanwhile, and after, the warm key is VALID on all three
        past = clock.now() + timedelta(seconds=STALENESS + 0.5)

        async def warm_and_past() -> bool:
            answers = await parity.ask(WARM)
            assert {name: seen.code for name, seen in answers.items()} == dict.fromkeys(TRANSPORTS, "VALID")
            return clock.now() > past and not parity.local.cache.is_current(STALENESS)
        await until(warm_and_past, timeout=3 * STALENESS + 10, interval=0.1,
                    what="the caches to age past the staleness bound")
        for case in WHILE_AWAY:
            await parity.ask(case)
        stack.start_postgres()
        await parity.read_back(auditor, timeout=60)  # the audit sink stores them once Postgres is back
    parity.compare()


@pytest.mark.timeout(240)
async def test_every_transport_answers_and_records_alike_with_nats_gone(stack: Stack, clock: ReferenceClock,
                                                                        tmp_path: Path) -> None:
    async with parity_on(stack, clock, tmp_path) as (parity, auditor):
        stack.stop_nats()
        for case in WHILE_AWAY:
            answers = await parity.ask(case)
            if case is WARM:
                assert {name: seen.code for name, seen in answers.items()} == dict.fromkeys(TRANSPORTS, "VALID")
        stack.start_nats()
        await parity.read_back(auditor, timeout=60)  # spooled while NATS was away, sent once it is back
    parity.compare()
