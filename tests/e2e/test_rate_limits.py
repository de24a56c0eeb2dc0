"""Rate limits over HTTP: headers on every authenticated response, 429s, verify, replicas."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.support.server import ApiServer
from tests.support.api import create
from tests.support.pipeline import isolated_settings

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def wait_for_a_fresh_window(seconds_needed: float = 20) -> None:
    """Start a burst early in a minute so it is counted in one window."""
    into = time.time() % 60
    if into > 60 - seconds_needed:
        time.sleep(60 - into + 0.05)


def test_headers_on_every_authenticated_response_then_429(client: httpx.Client, admin: str) -> None:
    wait_for_a_fresh_window()
    limited = create(client, admin, scopes=["admin:apikeys"], rate_limit=7)
    assert limited["rate_limit"] == 7 and limited["rate_tier"] == "standard"
    auth = {"x-api-key": limited["secret"]}
    responses = [
        client.get("/v1/keys", headers=auth),                                              # 200
        client.get("/v1/keys/AAAAAAAAAAAA", headers=auth),                                 # 404
        client.patch(f"/v1/keys/{limited['id']}", headers={**auth, "If-Match": '"9"'},
                     json={"name": "x"}),                                                  # 409
        client.post("/v1/keys", headers=auth, json={"name": 5}),                           # 400 (bad body)
        client.post("/v1/keys", headers=auth, content=b"{", ),                              # 400 (not JSON)
        client.post(f"/v1/keys/{limited['id']}/rotate", headers=auth, json={"grace_seconds": -1}),  # 400
    ]
    assert [r.status_code for r in responses] == [200, 404, 409, 400, 400, 400]
    for response in responses:
        assert all(h in response.headers for h in HEADERS), (response.status_code, response.headers)
        assert response.headers["x-ratelimit-limit"] == "7"
    assert [int(r.headers["x-ratelimit-remaining"]) for r in responses] == [6, 5, 4, 3, 2, 1]
    reset = int(responses[0].headers["x-ratelimit-reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 60
    assert client.get("/v1/keys", headers=auth).status_code == 200  # the 7th
    refused = client.get("/v1/keys", headers=auth)
    assert refused.status_code == 429
    assert refused.json() == {"success": False, "error": "Rate limit exceeded", "code": "RATE_LIMITED"}
    assert refused.headers["x-ratelimit-remaining"] == "0" and 1 <= int(refused.headers["retry-after"]) <= 60
    other = client.get("/v1/keys", headers={"x-api-key": admin})  # the bootstrap admin: its own budget
    assert other.status_code == 200 and other.headers["x-ratelimit-limit"] == "100"
    premium = create(client, admin, scopes=["admin:apikeys", "rate:premium"])
    assert client.get("/v1/keys", headers={"x-api-key": premium["secret"]}).headers["x-ratelimit-limit"] == "1000"


def test_verify_answers_rate_limited_for_the_key_checked(client: httpx.Client, admin: str) -> None:
    wait_for_a_fresh_window()
    key = create(client, admin, scopes=["read:data"], rate_limit=3)
    answers = [client.post("/v1/verify", json={"key": key["secret"], "scope": "read:data"}) for _ in range(4)]
    assert [a.json()["code"] for a in answers] == ["VALID", "VALID", "VALID", "RATE_LIMITED"]
    assert [a.json()["ratelimit"]["remaining"] for a in answers] == [2, 1, 0, 0]
    assert all(a.status_code == 200 and a.headers["x-ratelimit-limit"] == "3" for a in answers)
    assert answers[-1].json()["valid"] is False and "retry-after" in answers[-1].headers
    changed = client.patch(f"/v1/keys/{key['id']}", headers={"x-api-key": admin}, json={"rate_limit": 0})
    assert changed.json()["rate_limit"] is None  # back to the tier: 100 per minute
    again = client.post("/v1/verify", json={"key": key["secret"], "scope": "read:data"}).json()
    assert again["code"] == "VALID" and again["ratelimit"]["limit"] == 100


def test_repeated_authentication_failures_from_one_ip_are_throttled(
        database_url: str, nats_url: str, tmp_path: Path) -> None:
    server = ApiServer(database_url, nats_url, isolated_settings(), tmp_path,
                       extra_env={"KEYLEDGER_AUTH_FAILURE_LIMIT": "3"})
    try:
        server.wait_ready()
        wait_for_a_fresh_window(10)
        with httpx.Client(base_url=server.url) as client:
            for attempt in ("kl_wrong", "", "kl_" + "A" * 50):
                assert client.get("/v1/keys", headers={"x-api-key": attempt}).status_code == 401
            blocked = client.get("/v1/keys", headers={"x-api-key": server.bootstrap_secret or ""})
            assert blocked.status_code == 429 and blocked.json()["code"] == "RATE_LIMITED"
            assert "retry-after" in blocked.headers
            body = {"key": "kl_bad", "scope": "read:data", "ip": "203.0.113.77"}
            codes = [client.post("/v1/verify", json=body).json()["code"] for _ in range(4)]
            assert codes == ["MALFORMED", "MALFORMED", "MALFORMED", "RATE_LIMITED"]
            other_ip = client.post("/v1/verify", json={**body, "ip": "203.0.113.78"}).json()
            assert other_ip["code"] == "MALFORMED"
    finally:
        server.stop()


def test_two_replicas_accept_within_ten_percent_of_the_limit(
        database_url: str, nats_url: str, tmp_path: Path) -> None:
    settings = isolated_settings()
    first = ApiServer(database_url, nats_url, settings, tmp_path)
    second: ApiServer | None = None
    try:
        first.wait_ready()
        second = ApiServer(database_url, nats_url, settings, tmp_path, workers=False).wait_ready()
        with httpx.Client(base_url=first.url) as one, httpx.Client(base_url=second.url) as two:
            key = create(one, first.bootstrap_secret or "", scopes=["read:data"])  # standard tier: 100 a minute
            body = {"key": key["secret"], "scope": "read:data"}
            deadline = time.monotonic() + 10
            while two.post("/v1/verify", json=body).json()["code"] == "NOT_FOUND":  # wait for replica two
                assert time.monotonic() < deadline
            wait_for_a_fresh_window()
            start_window = time.time() // 60
            answers = [(one if i % 2 else two).post("/v1/verify", json=body).json() for i in range(300)]
            assert time.time() // 60 == start_window, "the burst straddled a window; rerun"
        accepted = sum(a["code"] == "VALID" for a in answers)
        # the one verify that found the key on replica two also counted
        assert 90 <= accepted + 1 <= 110, accepted
        assert {a["code"] for a in answers} == {"VALID", "RATE_LIMITED"}
    finally:
        if second is not None:
            second.stop()
        first.stop()
