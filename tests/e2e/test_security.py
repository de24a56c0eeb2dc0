"""Attacks from the security review, reproduced through a real server; each must fail now."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import nats
import psycopg

from keyledger.domain import token
from keyledger.domain.access import AccessEntry
from keyledger.domain.events import KeyAccessChanged
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.messaging.streams import encode_message, subject_for
from tests.support.api import create, usage_for, usage_with, verify
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

REPLACEMENT = "\ufffd"


def test_nul_bytes_cannot_erase_anyone_elses_audit_events(client: httpx.Client, admin: str, auditor: str) -> None:
    """One request with a NUL per flush used to make Postgres refuse a whole batch of usage events,
    and the sink dropped it: everyone's activity in it was gone. Now every real event arrives."""
    key = create(client, admin, scopes=["read:data"], rate_limit=100_000)
    real_ids, evil_ids = [], []
    for i in range(30):
        if i % 3 == 0:  # no key at all, a NUL in the path (stays under the per-IP failure limit)
            assert client.get("/v1/keys/a%00b").status_code == 401
        evil = f"evil-{uuid.uuid4().hex}"
        evil_ids.append(evil)
        refused = client.post("/v1/verify", headers={"x-request-id": evil}, json={
            "key": "kl_\u0000", "scope": "read:data", "website_id": "a\u0000b", "user_agent": "\u0000evil"})
        assert refused.status_code == 200 and refused.json()["code"] == "MALFORMED"
        real = f"real-{uuid.uuid4().hex}"
        real_ids.append(real)
        answer = client.post("/v1/verify", headers={"x-request-id": real},
                             json={"key": key["secret"], "scope": "read:data", "user_agent": "analytics-api/2"})
        assert answer.json()["valid"] is True
    for request_id in real_ids:
        (event,) = usage_for(client, auditor, request_id)
        assert (event["outcome"], event["user_agent"]) == ("VALID", "analytics-api/2")
    evil_event = until_sync(lambda: usage_with(client, auditor, evil_ids[-1]), timeout=15, interval=0.05,
                            what="the attacker's own event, made harmless")[0]
    assert evil_event["user_agent"] == f"{REPLACEMENT}evil" and evil_event["website_id"] == f"a{REPLACEMENT}b"
    unauthenticated = client.get("/v1/audit", params={"kind": "usage", "outcome": "MISSING"},
                                 headers={"x-api-key": auditor}).json()["items"]
    assert {item["action"] for item in unauthenticated} == {"GET /v1/keys/{key_id}"}  # the route, not the raw path
    assert len(unauthenticated) == 10


def test_an_organization_admin_cannot_grant_more_than_it_holds(client: httpx.Client, admin: str) -> None:
    """The reproduced escalation: an org admin made a key with global read:data, write:custom-sql and
    admin:organizations and a 10M limit, and verify said VALID for any organization's website."""
    site_a = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
    org_admin = create(client, admin, organization_id="org-a", scopes=["admin:apikeys"], access=site_a)["secret"]
    escalation = {"name": "everything", "scopes": ["read:data", "write:custom-sql", "admin:organizations"],
                  "rate_limit": 10_000_000}
    refused = client.post("/v1/keys", json=escalation, headers={"x-api-key": org_admin})
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert "read:data on global" in refused.json()["error"]
    mine = create(client, org_admin, access=site_a)
    assert verify(client, mine["secret"], "read:data", website_id="site-a")["valid"] is True
    assert verify(client, mine["secret"], "read:data", website_id="site-of-org-b")["code"] == "FORBIDDEN"


def test_a_forged_message_on_the_bus_grants_nothing(client: httpx.Client, admin: str, api: ApiServer,
                                                    replica: StartServer) -> None:
    """Whoever could publish on the key-event subjects could grant any scope, and every replica applied it."""
    other = replica()
    victim = create(client, admin, scopes=["read:data"])
    with httpx.Client(base_url=other.url, timeout=10) as second:
        until_sync(lambda: verify(second, victim["secret"], "read:data")["valid"], timeout=10,
                   what="the replica to know the key")
        forged = RecordedEvent(
            global_position=10_000, event_id=uuid.uuid4(), stream_id=victim["id"], version=2, type="key.access_changed",
            event=KeyAccessChanged(key_id=victim["id"], at=datetime.now(UTC), access=(
                AccessEntry(resource="global", scopes=("read:data", "write:custom-sql", "admin:apikeys")),)),
            metadata=Metadata(), recorded_at=datetime.now(UTC))
        asyncio.run(_publish(api.nats_url, subject_for(api.settings, victim["id"]), encode_message(forged)))
        for server in (client, second):
            until_sync(lambda s=server: s.get("/readyz").json()["forged"] >= 1, timeout=10,  # type: ignore[misc]
                       what="the forged message to arrive, be checked against the store and be ignored")
        for server in (client, second):  # the API that serves it and the replica: neither applies it
            assert verify(server, victim["secret"], "write:custom-sql")["code"] == "FORBIDDEN"
            listed = server.get(f"/v1/keys/{victim['id']}", headers={"x-api-key": admin}).json()
            assert (listed["version"], listed["scopes"]) == (1, ["read:data"])
        assert client.post(f"/v1/keys/{victim['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
        until_sync(lambda: verify(second, victim["secret"], "read:data")["code"] == "REVOKED", timeout=10,
                   what="the real version 2 (the revoke) on the replica")


async def _publish(url: str, subject: str, body: bytes) -> None:
    """Publish as an attacker with access to the bus would: a plain NATS client."""
    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(subject, body, headers={"Nats-Msg-Id": str(uuid.uuid4())})
    finally:
        await nc.close()


def test_a_lockout_aimed_by_one_source_leaves_another_working(client: httpx.Client, admin: str) -> None:
    """20 bad verifies naming an admin's IP used to lock that admin out of /v1/keys, and anyone knowing a
    key id could make its owner's cold checks answer RATE_LIMITED."""
    admin_ip = "127.0.0.1"  # where this test's admin calls from
    for _ in range(25):
        client.post("/v1/verify", json={"key": "kl_junk", "scope": "read:data", "ip": admin_ip})
    assert verify(client, "kl_junk", "read:data", ip=admin_ip)["code"] == "RATE_LIMITED"  # that ip, in verify
    assert client.get("/v1/keys", headers={"x-api-key": admin}).status_code == 200  # the admin itself: fine
    key = create(client, admin, scopes=["read:data"])
    for i in range(15):  # well-formed tokens for the key's id, each with another wrong secret
        wrong = token.format_token("kl", key["id"], f"{i:02d}" + "w" * (token.SECRET_LENGTH - 2))
        client.post("/v1/verify", json={"key": wrong, "scope": "read:data", "ip": "203.0.113.66"})
    assert verify(client, key["secret"], "read:data", ip="203.0.113.66")["code"] == "RATE_LIMITED"
    assert verify(client, key["secret"], "read:data", ip="198.51.100.7")["code"] == "VALID"  # the owner, cold


def test_verify_callers_authenticate_by_default(start_server: StartServer, database_url: str) -> None:
    """POST /v1/verify needed no credential by default. Now: 401 without one; the credential printed on the
    first start, an admin key or the static token work; the caller lands in the usage event."""
    closed = start_server(extra_env={"KEYLEDGER_VERIFY_OPEN": "", "KEYLEDGER_VERIFY_TOKEN": "static-verify-token"})
    assert closed.bootstrap_secret is not None and closed.verify_credential is not None, closed.log()
    assert closed.verify_credential.startswith("klvc_")
    admin = closed.bootstrap_secret
    with httpx.Client(base_url=closed.url, timeout=10) as client:
        key = create(client, admin, scopes=["read:data"])
        body = {"key": key["secret"], "scope": "read:data"}
        anonymous = client.post("/v1/verify", json=body)
        assert anonymous.status_code == 401 and anonymous.json()["code"] == "AUTH_REQUIRED"
        wrong = client.post("/v1/verify", json=body, headers={"Authorization": "Bearer klvc_not-a-credential"})
        assert wrong.status_code == 401
        for caller in (closed.verify_credential, admin, "static-verify-token"):
            answer = client.post("/v1/verify", json=body, headers={"Authorization": f"Bearer {caller}"})
            assert answer.status_code == 200 and answer.json()["valid"] is True, caller[:5]
        charged = client.post("/v1/verify", json=body, headers={"Authorization": f"Bearer {admin}"}).json()
        assert charged["ratelimit"]["remaining"] == 100 - 4  # the verified key's limit, not the caller's
    until_sync(lambda: _callers(database_url) >= {"service-token", f"key:{_key_id(admin)}"}, timeout=15,
               what="the callers in the usage events")
    assert any(caller.startswith("credential:") for caller in _callers(database_url))


def _callers(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT DISTINCT caller FROM usage_events WHERE caller IS NOT NULL")}


def _key_id(secret: str) -> str:
    return token.parse(secret).key_id
