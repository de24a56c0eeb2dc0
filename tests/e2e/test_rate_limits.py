"""Rate limits over HTTP: headers on every authenticated response, 429s, verify, replicas.

The servers run on the test's clock (``tests.support.clock``), so each test knows which one-minute
window its requests fall in, whatever the wall time: ``clock.shared_window`` returns it (and waits
for the next one only if a very slow machine has used up the first).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from tests.support.api import create
from tests.support.clock import WINDOW, ReferenceClock
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def reset_of(window: datetime) -> int:
    """``X-RateLimit-Reset`` for requests in ``window``: when it ends, in Unix seconds."""
    return int((window + WINDOW).timestamp())


def test_headers_on_every_authenticated_response_then_429(client: httpx.Client, admin: str, api: ApiServer,
                                                          clock: ReferenceClock) -> None:
    window = clock.shared_window(needed=20, lag=api.startup_seconds)
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
    assert {int(r.headers["x-ratelimit-reset"]) for r in responses} == {reset_of(window)}
    assert client.get("/v1/keys", headers=auth).status_code == 200  # the 7th
    refused = client.get("/v1/keys", headers=auth)
    assert refused.status_code == 429
    assert refused.json() == {"success": False, "error": "Rate limit exceeded", "code": "RATE_LIMITED"}
    assert refused.headers["x-ratelimit-remaining"] == "0" and 1 <= int(refused.headers["retry-after"]) <= 60
    other = client.get("/v1/keys", headers={"x-api-key": admin})  # the bootstrap admin: its own budget
    assert other.status_code == 200 and other.headers["x-ratelimit-limit"] == "100"
    premium = create(client, admin, scopes=["admin:apikeys", "rate:premium"])
    assert client.get("/v1/keys", headers={"x-api-key": premium["secret"]}).headers["x-ratelimit-limit"] == "1000"


def test_verify_answers_rate_limited_for_the_key_checked(client: httpx.Client, admin: str, api: ApiServer,
                                                         clock: ReferenceClock) -> None:
    window = clock.shared_window(needed=20, lag=api.startup_seconds)
    key = create(client, admin, scopes=["read:data"], rate_limit=3)
    answers = [client.post("/v1/verify", json={"key": key["secret"], "scope": "read:data"}) for _ in range(4)]
    assert [a.json()["code"] for a in answers] == ["VALID", "VALID", "VALID", "RATE_LIMITED"]
    assert [a.json()["ratelimit"]["remaining"] for a in answers] == [2, 1, 0, 0]
    assert all(a.status_code == 200 and a.headers["x-ratelimit-limit"] == "3" for a in answers)
    assert answers[-1].json()["valid"] is False and "retry-after" in answers[-1].headers
    assert {a.json()["ratelimit"]["reset"] for a in answers} == {reset_of(window)}
    changed = client.patch(f"/v1/keys/{key['id']}", headers={"x-api-key": admin}, json={"rate_limit": 0})
    assert changed.json()["rate_limit"] is None  # back to the tier: 100 per minute
    again = client.post("/v1/verify", json={"key": key["secret"], "scope": "read:data"}).json()
    assert again["code"] == "VALID" and again["ratelimit"]["limit"] == 100


def test_repeated_authentication_failures_from_one_ip_are_throttled(start_server: StartServer,
                                                                   clock: ReferenceClock) -> None:
    server = start_server(extra_env={"KEYLEDGER_AUTH_FAILURE_LIMIT": "3"})
    clock.shared_window(needed=20, lag=server.startup_seconds)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/v1/keys").status_code == 401  # no key: nothing tried, no failure counted
        for attempt in ("kl_wrong", "wrong", "kl_" + "A" * 50):
            assert client.get("/v1/keys", headers={"x-api-key": attempt}).status_code == 401
        blocked = client.get("/v1/keys", headers={"x-api-key": server.bootstrap_secret or ""})
        assert blocked.status_code == 429 and blocked.json()["code"] == "RATE_LIMITED"
        assert "retry-after" in blocked.headers
        body = {"key": "kl_bad", "scope": "read:data", "ip": "203.0.113.77"}
        codes = [client.post("/v1/verify", json=body).json()["code"] for _ in range(4)]
        assert codes == ["MALFORMED", "MALFORMED", "MALFORMED", "RATE_LIMITED"]
        other_ip = client.post("/v1/verify", json={**body, "ip": "203.0.113.78"}).json()
        assert other_ip["code"] == "MALFORMED"


def test_two_replicas_accept_within_ten_percent_of_the_limit(api: ApiServer, admin: str, replica: StartServer,
                                                             clock: ReferenceClock) -> None:
    second = replica()
    with httpx.Client(base_url=api.url) as one, httpx.Client(base_url=second.url) as two:
        key = create(one, admin, scopes=["read:data"])  # standard tier: 100 a minute
        body = {"key": key["secret"], "scope": "read:data"}

        def known_to_two() -> dict[str, Any] | None:
            answer: dict[str, Any] = two.post("/v1/verify", json=body).json()
            return None if answer["code"] == "NOT_FOUND" else answer

        first_seen = until_sync(known_to_two, timeout=10, what="replica two to know the new key")
        window = clock.shared_window(needed=20, lag=max(api.startup_seconds, second.startup_seconds))
        answers = [(one if i % 2 else two).post("/v1/verify", json=body).json() for i in range(300)]
    assert {a["ratelimit"]["reset"] for a in answers} == {reset_of(window)}  # one window: counts comparable
    counted = [a for a in [first_seen, *answers] if a["ratelimit"]["reset"] == reset_of(window)]
    accepted = sum(a["code"] == "VALID" for a in counted)
    assert 90 <= accepted <= 110, accepted
    assert {a["code"] for a in answers} == {"VALID", "RATE_LIMITED"}
