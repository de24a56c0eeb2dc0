"""Behind a reverse proxy, one attacker must not lock every administrator out.

The per-address failure lockout (``KEYLEDGER_AUTH_FAILURE_LIMIT``, 20 a minute) counted the socket peer only,
so behind a proxy everyone shared one address: 20 bad keys locked out the API, sign-in and signed-in
dashboard sessions. Now ``KEYLEDGER_TRUSTED_PROXIES`` names the proxies whose ``X-Forwarded-For``/``Forwarded``
are believed (and the address they lead to is recorded), a lockout never refuses a proven credential (a key
this process already accepted, a live dashboard session), and a verify call without any credential is no
failure at all. Real servers; the test client plays the proxy on 127.0.0.1.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.api import create, sign_in, usage_for
from tests.support.clock import ReferenceClock
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

pytestmark = pytest.mark.e2e

LIMIT = 20  # KEYLEDGER_AUTH_FAILURE_LIMIT's default
PROXIED = {"KEYLEDGER_TRUSTED_PROXIES": "127.0.0.1/32"}
CLOSED = {"KEYLEDGER_VERIFY_OPEN": ""}  # verify callers must authenticate (the default outside these tests)
ATTACKER, ADMIN_IP = "198.51.100.66", "203.0.113.10"


def unknown_key(n: int) -> str:
    return f"kl_wrong{n:04d}"


def locked_out(client: httpx.Client, headers: dict[str, str]) -> None:
    """Fail ``LIMIT`` times from the address ``headers`` lead to; the next failure is refused with 429."""
    for n in range(LIMIT):
        failed = client.get("/v1/keys", headers={**headers, "x-api-key": unknown_key(n)})
        assert failed.status_code == 401, failed.text
    refused = client.get("/v1/keys", headers={**headers, "x-api-key": unknown_key(LIMIT)})
    assert refused.status_code == 429 and refused.json()["code"] == "RATE_LIMITED", refused.text


def browser_of(server: ApiServer, headers: dict[str, str] | None = None) -> httpx.Client:
    """A client that keeps the dashboard's cookies."""
    return httpx.Client(base_url=server.url, timeout=10, headers=headers or {})


def auditor_of(client: httpx.Client, admin: str) -> str:
    """A key that reads the audit trail, used once (so a lockout of its address does not refuse it)."""
    secret: str = create(client, admin, scopes=["admin:apikeys", "read:export"], rate_limit=1_000_000)["secret"]
    assert client.get("/v1/audit", params={"limit": 1}, headers={"x-api-key": secret}).status_code == 200
    return secret


def stored_ips(database_url: str, request_id: str) -> set[str]:
    """The addresses stored with the usage events of the requests with ``request_id`` (read from Postgres:
    an API call from the locked-out address would be refused)."""
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute("SELECT ip FROM usage_events WHERE request_id = %s", (request_id,))}


def recorded_ips(client: httpx.Client, auditor: str, request_id: str) -> set[Any]:
    """The addresses the usage events of the requests with ``request_id`` record (once one is stored)."""
    return {event["ip"] for event in usage_for(client, auditor, request_id)}


def test_behind_a_trusted_proxy_an_attacker_locks_out_only_its_own_address(start_server: StartServer,
                                                                          clock: ReferenceClock) -> None:
    server = start_server(extra_env=PROXIED)
    admin = server.bootstrap_secret
    assert admin is not None, server.log()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        auditor = auditor_of(client, admin)
        cold_admin = create(client, admin, scopes=["admin:apikeys"])["secret"]  # never used yet: argon2 to check
        clock.shared_window(needed=30, lag=server.startup_seconds)
        # the attacker names the admin's address first; its proxy appended the attacker's own
        attacker = {"X-Forwarded-For": f"{ADMIN_IP}, {ATTACKER}", "x-request-id": "proxied-attacker"}
        locked_out(client, attacker)

        served = client.get("/v1/keys", headers={"x-api-key": cold_admin, "X-Forwarded-For": ADMIN_IP,
                                                 "x-request-id": "proxied-admin"})
        assert served.status_code == 200, served.text  # was 429: everyone shared 127.0.0.1
        by_forwarded = client.get("/v1/keys", headers={"x-api-key": cold_admin, "x-request-id": "proxied-ipv6",
                                                       "Forwarded": 'for="[2001:db8::10]:4711";proto=https'})
        assert by_forwarded.status_code == 200, by_forwarded.text
        made = client.post("/v1/keys", json={"name": "made behind the proxy"},
                           headers={"x-api-key": cold_admin, "X-Forwarded-For": ADMIN_IP})
        assert made.status_code == 201, made.text
        with browser_of(server, {"X-Forwarded-For": ADMIN_IP}) as browser:
            answer = sign_in(browser, cold_admin)
            assert answer.status_code == 303, answer.text
            assert browser.get("/dashboard/keys").status_code == 200
        still = client.get("/v1/keys", headers={"x-api-key": unknown_key(0), "X-Forwarded-For": ATTACKER})
        assert still.status_code == 429  # the attacker stays locked out

        # the audit trail names the forwarded client, for calls and for the changes they make
        assert recorded_ips(client, auditor, "proxied-attacker") == {ATTACKER}
        assert recorded_ips(client, auditor, "proxied-admin") == {ADMIN_IP}
        assert recorded_ips(client, auditor, "proxied-ipv6") == {"2001:db8::10"}
        lifecycle = client.get("/v1/audit", params={"key_id": made.json()["id"], "kind": "lifecycle"},
                               headers={"x-api-key": auditor}).json()["items"]
        assert [(item["action"], item["ip"]) for item in lifecycle] == [("key.created", ADMIN_IP)]


@pytest.mark.parametrize("env", [{}, {"KEYLEDGER_TRUSTED_PROXIES": "10.0.0.0/8"}], ids=["unset", "peer-untrusted"])
def test_forwarded_headers_from_an_untrusted_peer_change_nothing(start_server: StartServer, clock: ReferenceClock,
                                                                 database_url: str, env: dict[str, str]) -> None:
    server = start_server(extra_env=env)
    admin = server.bootstrap_secret
    assert admin is not None, server.log()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        cold_admin = create(client, admin, scopes=["admin:apikeys"])["secret"]
        clock.shared_window(needed=30, lag=server.startup_seconds)
        for n in range(LIMIT):  # a new address claimed for every failure
            failed = client.get("/v1/keys", headers={"x-api-key": unknown_key(n), "x-request-id": f"spoof-{n}",
                                                     "X-Forwarded-For": f"198.51.100.{n}",
                                                     "Forwarded": f"for=198.51.100.{n}"})
            assert failed.status_code == 401
        claimed = client.get("/v1/keys", headers={"x-api-key": cold_admin, "X-Forwarded-For": ADMIN_IP,
                                                  "Forwarded": f"for={ADMIN_IP}"})
        assert claimed.status_code == 429  # the lockout is the socket peer's, whatever it claims
    stored = until_sync(lambda: stored_ips(database_url, "spoof-0"), timeout=15, what="the failure's usage event")
    assert stored == {"127.0.0.1"}


def test_a_locked_out_address_still_serves_proven_credentials(start_server: StartServer,
                                                              clock: ReferenceClock) -> None:
    """No trusted proxy: every caller shares 127.0.0.1, as behind an unconfigured proxy."""
    server = start_server(extra_env=CLOSED)
    admin = server.bootstrap_secret
    assert admin is not None and server.verify_credential is not None, server.log()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        cold_admin = create(client, admin, scopes=["admin:apikeys"])["secret"]  # the admin key is warm now
        key = create(client, admin, scopes=["read:data"])["secret"]
        with browser_of(server) as browser:
            signed = sign_in(browser, admin)
            assert signed.status_code == 303, signed.text
            clock.shared_window(needed=30, lag=server.startup_seconds)
            locked_out(client, {})

            # proven: a key this process accepted before, a live session, a verify credential
            assert client.get("/v1/keys", headers={"x-api-key": admin}).status_code == 200
            made = client.post("/v1/keys", json={"name": "made while locked out"}, headers={"x-api-key": admin})
            assert made.status_code == 201, made.text
            page = browser.get("/dashboard/keys")
            assert page.status_code == 200 and "made while locked out" in page.text
            with browser_of(server) as other:
                again = sign_in(other, admin)
                assert again.status_code == 303, again.text
            body = {"key": key, "scope": "read:data"}
            for caller in (admin, server.verify_credential):
                answer = client.post("/v1/verify", json=body, headers={"Authorization": f"Bearer {caller}"})
                assert answer.status_code == 200 and answer.json()["code"] == "VALID", answer.text

            # unproven: a good key not checked yet (argon2), an unknown one, garbage
            for presented in (cold_admin, unknown_key(99), "garbage"):
                refused = client.get("/v1/keys", headers={"x-api-key": presented})
                assert refused.status_code == 429 and refused.json()["code"] == "RATE_LIMITED", presented[:8]
            refused = client.post("/v1/verify", json=body, headers={"Authorization": f"Bearer {cold_admin}"})
            assert refused.status_code == 429
            with browser_of(server) as other:
                cold_sign_in = sign_in(other, cold_admin)
                assert cold_sign_in.status_code == 429 and "Too many attempts" in cold_sign_in.text


def test_a_verify_call_without_a_credential_is_no_failure(start_server: StartServer, clock: ReferenceClock) -> None:
    """Refused before its body is read (none is needed to answer it), and it tried nothing: it must not
    count towards the shared address's lockout. A credential that fails still counts."""
    server = start_server(extra_env=CLOSED)
    admin = server.bootstrap_secret
    assert admin is not None and server.verify_credential is not None, server.log()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        cold_admin = create(client, admin, scopes=["admin:apikeys"])["secret"]
        key = create(client, admin, scopes=["read:data"])["secret"]
        body = {"key": key, "scope": "read:data"}
        clock.shared_window(needed=30, lag=server.startup_seconds)
        answers = [client.post("/v1/verify", json=body) for _ in range(LIMIT + 5)]
        answers.append(client.post("/v1/verify", content=b"{not json"))  # the body is never read
        assert {(a.status_code, a.json()["code"]) for a in answers} == {(401, "AUTH_REQUIRED")}
        assert unanswered_body(server) == 401  # headers only: answered without waiting for the body
        assert client.get("/v1/keys", headers={"x-api-key": cold_admin}).status_code == 200  # not locked out

        for n in range(LIMIT):  # a credential that fails is a failure
            wrong = client.post("/v1/verify", json=body, headers={"Authorization": f"Bearer klvc_wrong{n}"})
            assert wrong.status_code == 401
        wrong = client.post("/v1/verify", json=body, headers={"Authorization": "Bearer klvc_wrong"})
        assert wrong.status_code == 429 and wrong.json()["code"] == "RATE_LIMITED"
        proven = client.post("/v1/verify", json=body, headers={"Authorization": f"Bearer {server.verify_credential}"})
        assert proven.status_code == 200 and proven.json()["valid"] is True


def unanswered_body(server: ApiServer) -> int:
    """POST /v1/verify announcing a body it never sends: the status it is answered with (the socket's
    timeout bounds the wait)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/verify HTTP/1.1\r\nHost: keyledger\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        head = sock.recv(4096)
    return int(head.split(b" ", 2)[1])
