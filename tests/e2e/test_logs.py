"""Structured logs of a real ``keyledger serve``: JSON lines carrying the request id that the
``X-Request-Id`` header and the usage event carry too, and never a secret."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tests.support.api import create, usage_for
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync


def json_lines(log: str) -> list[dict[str, Any]]:
    """The log's structured lines (the banner and granian's own lines are plain text)."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def lines_with(api: ApiServer, request_id: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(api.log()) if line.get("request_id") == request_id]


def test_a_request_id_is_in_the_header_the_usage_event_and_the_log_line(api: ApiServer, admin: str,
                                                                       client: httpx.Client) -> None:
    given = f"req-{uuid.uuid4().hex}"
    response = client.post("/v1/keys", json={"name": "logged", "scopes": ["read:data"]},
                           headers={"x-api-key": admin, "x-request-id": given})
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == given
    (event,) = usage_for(client, admin, given)
    assert event["action"] == "POST /v1/keys"
    (line,) = until_sync(lambda: lines_with(api, given), timeout=10, interval=0.05, what="the create's log line")
    key = response.json()
    assert (line["key_id"], line["start"], line["status"], line["process"]) == (key["id"], key["start"], 201, "api")
    assert {"time", "level", "event", "pid", "logger"} <= set(line) and line["level"] == "info"

    # no id given: one is made up, and it is the same everywhere
    rotated = client.post(f"/v1/keys/{key['id']}/rotate", json={}, headers={"x-api-key": admin})
    made_up = rotated.headers["x-request-id"]
    assert len(made_up) == 32 and made_up != given
    assert usage_for(client, admin, made_up)
    until_sync(lambda: lines_with(api, made_up), timeout=10, interval=0.05, what="the rotate's log line")
    # every response has one, errors and the verify hot path included
    assert client.get("/v1/keys/nope", headers={"x-api-key": admin}).headers["x-request-id"]
    assert client.post("/v1/verify", json={"key": "x", "scope": "read:data"}).headers["x-request-id"]


def test_an_unfit_request_id_is_replaced(client: httpx.Client) -> None:
    for unfit in (b"has space", "é-accented".encode(), b"", b"tab\there"):
        answered = client.get("/healthz", headers=[(b"x-request-id", unfit)])
        assert answered.headers["x-request-id"].encode() != unfit and len(answered.headers["x-request-id"]) == 32
    assert client.get("/healthz", headers={"x-request-id": "a" * 300}).headers["x-request-id"] == "a" * 100


def test_no_secret_reaches_any_log_line(start_server: StartServer) -> None:
    api = start_server(extra_env={"KEYLEDGER_VERIFY_OPEN": ""})
    admin, credential = api.bootstrap_secret, api.verify_credential
    assert admin and credential
    secrets = [admin, credential]
    with httpx.Client(base_url=api.url, timeout=10) as client:
        bearer = {"Authorization": f"Bearer {credential}"}
        key = create(client, admin, scopes=["read:data"])
        secrets.append(key["secret"])
        client.post("/v1/verify", json={"key": key["secret"], "scope": "read:data"}, headers=bearer)
        client.post("/v1/verify", json={"key": key["secret"][:-3] + "zzz", "scope": "read:data"}, headers=bearer)
        rotated = client.post(f"/v1/keys/{key['id']}/rotate", json={"grace_seconds": 60}, headers={"x-api-key": admin})
        secrets.append(rotated.json()["secret"])
        client.post("/v1/verify", json={"key": secrets[-1], "scope": "read:data"}, headers=bearer)
        client.post(f"/v1/keys/{key['id']}/revoke", json={}, headers={"x-api-key": admin})
        client.post("/v1/verify", json={"key": secrets[-1], "scope": "read:data"}, headers=bearer)
        # a caller pasting secrets where they do not belong: a path, a request id, a wrong auth header
        client.get(f"/v1/keys/{secrets[-1]}", headers={"x-api-key": admin, "x-request-id": secrets[2]})
        pasted = client.post("/v1/keys", json={"name": "pasted"}, headers={"x-api-key": admin,
                                                                          "x-request-id": secrets[3]})
        assert pasted.status_code == 201 and pasted.headers["x-request-id"] != secrets[3]
        client.get("/v1/keys", headers={"x-api-key": secrets[-1]})
        client.get("/metrics", headers={"Authorization": f"Bearer {secrets[2]}"})
        assert client.get("/metrics", headers=bearer).status_code == 200
    api.stop()
    log = api.log()
    banner, _, rest = log.partition("keyledger API on ")
    assert admin in banner and credential in banner  # printed once, on purpose, before anything is logged
    assert json_lines(log), log
    for secret in secrets:
        assert secret not in rest, f"a secret in the log: {secret[:12]}…"
    for secret in secrets[2:]:
        assert secret not in banner


def test_text_format_for_people(start_server: StartServer) -> None:
    api = start_server(extra_env={"KEYLEDGER_LOG_FORMAT": "text"})
    assert api.bootstrap_secret
    with httpx.Client(base_url=api.url, timeout=10) as client:
        created = client.post("/v1/keys", json={"name": "t"}, headers={"x-api-key": api.bootstrap_secret,
                                                                      "x-request-id": "req-text-1"})
    assert created.status_code == 201
    until_sync(lambda: "api[req-text-1]: key create answered 201" in api.log(), timeout=10, interval=0.05,
               what="a plain log line", explain=api.log)
    assert not json_lines(api.log())
