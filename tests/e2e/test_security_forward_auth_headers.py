"""An end client cannot write the request line or the address that forward-auth records.

Through a real gateway running the documented configuration (docs/verify.md), a client sends its own
``X-Forwarded-*``, ``X-Original-*``, ``X-Real-IP`` and ``Forwarded`` headers naming a harmless page, another
method and another address; the audit trail records the path, method and address the gateway itself saw.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import create, usage_for, usage_with
from tests.support.gateway import (
    CADDY_CANDIDATES,
    NGINX_CANDIDATES,
    Caddy,
    EchoUpstream,
    Gateway,
    Nginx,
    require_binary,
)
from tests.support.server import ApiServer

SITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
FORGED = {"X-Forwarded-Uri": "/api/harmless-page", "X-Forwarded-Method": "HEAD",
          "X-Original-URI": "/api/harmless-page", "X-Original-Method": "HEAD",
          "X-Forwarded-For": "198.51.100.9", "X-Real-IP": "198.51.100.9", "Forwarded": "for=198.51.100.9",
          "X-Forwarded-Host": "harmless.example"}


@pytest.fixture(params=["nginx", "caddy"])
def gateway(request: pytest.FixtureRequest, closed_api: ApiServer, upstream: EchoUpstream,
            tmp_path: Path) -> Iterator[Gateway]:
    """nginx or Caddy (Debian's), with the documented configuration."""
    credential = closed_api.verify_credential
    assert credential is not None, closed_api.log()
    folder = tmp_path / request.param
    started: Gateway
    if request.param == "nginx":
        started = Nginx(require_binary(NGINX_CANDIDATES, "nginx"), folder, closed_api.port, upstream.port, credential)
    else:
        started = Caddy(require_binary(CADDY_CANDIDATES, "caddy"), folder, closed_api.port, upstream.port, credential)
    try:
        yield started
    finally:
        started.stop()


def recorded_lines(gateway_url: str, http: httpx.Client, admin: str, log: str) -> list[tuple[str, str, str]]:
    """Send forged request-line headers through the gateway (an allowed GET, an allowed POST, a refused GET
    with no key); (action, outcome, ip) of each usage event, in that order."""
    key = create(http, admin, access=SITE_A)["secret"]
    auditor = create(http, admin, scopes=["read:export"], rate_limit=100_000)["secret"]
    sent = [("GET", {"x-api-key": key}, 200), ("POST", {"Authorization": f"Bearer {key}"}, 200), ("GET", {}, 401)]
    lines = []
    with httpx.Client(base_url=gateway_url, timeout=10) as client:
        for method, credential, status in sent:
            request_id = f"forged-line-{uuid.uuid4().hex}"
            response = client.request(method, "/api/secret-export?day=1", headers={
                **FORGED, **credential, "x-request-id": request_id})
            assert response.status_code == status, (method, response.text, log)
            (event,) = usage_for(http, auditor, request_id)
            lines.append((event["action"], event["outcome"], event["ip"]))
    return lines


EXPECTED = [("forward-auth GET /api/secret-export", "VALID", "127.0.0.1"),
            ("forward-auth POST /api/secret-export", "VALID", "127.0.0.1"),
            ("forward-auth GET /api/secret-export", "MISSING", "127.0.0.1")]


def test_the_gateway_records_the_request_line_it_saw_not_the_clients_headers(
        gateway: Gateway, http: httpx.Client, closed_api: ApiServer) -> None:
    assert closed_api.bootstrap_secret is not None, closed_api.log()
    lines = recorded_lines(gateway.url, http, closed_api.bootstrap_secret, gateway.log())
    assert lines == EXPECTED, (lines, gateway.log())


def test_forward_auth_reads_the_request_line_only_from_x_forwarded_headers(
        http: httpx.Client, closed_api: ApiServer) -> None:
    """Straight to keyledger, as a gateway that set none of its headers would call: the client's
    ``X-Original-*``, ``X-Real-IP`` and ``Forwarded`` are not taken for the request line or the address, and a
    repeated ``X-Forwarded-Method``/``-Uri`` (never what a gateway that sets them sends) is refused, uncharged."""
    admin = closed_api.bootstrap_secret
    assert admin is not None and closed_api.verify_credential is not None, closed_api.log()
    key = create(http, admin, access=SITE_A, rate_limit=10)["secret"]
    auditor = create(http, admin, scopes=["read:export"], rate_limit=100_000)["secret"]
    ask = {"scope": "read:data", "website_id": "site-a"}
    sent = {"X-Keyledger-Caller": closed_api.verify_credential, "x-api-key": key}
    unset = {name: value for name, value in FORGED.items() if not name.startswith("X-Forwarded-")}
    ok = http.get("/v1/forward-auth", params=ask, headers={**sent, **unset, "x-request-id": "fa-unset"})
    assert ok.status_code == 200, ok.text
    (event,) = usage_for(http, auditor, "fa-unset")
    assert (event["action"], event["ip"]) == ("forward-auth", None)
    for name in ("X-Forwarded-Uri", "X-Forwarded-Method"):
        repeated = http.get("/v1/forward-auth", params=ask, headers=[
            *sent.items(), (name, "GET" if name.endswith("Method") else "/api/secret-export"),
            (name, FORGED[name]), ("x-request-id", f"fa-repeated-{name}")])
        assert (repeated.status_code, repeated.json()) == (400, {
            "success": False, "error": f"{name} is repeated: the gateway must set it, not pass it on",
            "code": "VALIDATION_ERROR"})
    after = http.get("/v1/forward-auth", params=ask, headers={
        **sent, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/secret-export", "x-request-id": "fa-after"})
    assert after.status_code == 200 and after.headers["x-ratelimit-remaining"] == "8"  # the refusals cost nothing
    (event,) = usage_for(http, auditor, "fa-after")
    assert event["action"] == "forward-auth GET /api/secret-export"
    assert not usage_with(http, auditor, "fa-repeated-X-Forwarded-Uri")
    assert not usage_with(http, auditor, "fa-repeated-X-Forwarded-Method")
