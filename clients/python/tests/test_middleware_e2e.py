"""The ASGI middleware in a Starlette app and the Litestar plugin + guards, against a real ``keyledger serve``.

The protected apps run in the test's process (httpx's ASGI transport, with a made-up client address); the
keyledger they ask is a real server process.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from litestar import Litestar, Request, get
from litestar.params import PathParameter
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from keyledger_client import NO_RETRIES, Access, AsyncKeyledger, Keyledger
from keyledger_client.asgi import KeyledgerMiddleware, Route, verify_result
from keyledger_client.litestar import KeyledgerPlugin, keyledger_guard, requires_key
from tests.support.server import ApiServer, free_port
from tests.support.wait import until

with warnings.catch_warnings():  # Starlette's test client (for the websocket test) would rather have another httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SITE_A = [Access(resource="website", id="site-a", scopes=["read:data"])]
AUTH_REQUIRED = {"success": False, "error": "Authentication required", "code": "AUTH_REQUIRED"}
FORBIDDEN = {"success": False, "error": "Insufficient permissions", "code": "FORBIDDEN"}
RATE_LIMITED = {"success": False, "error": "Rate limit exceeded", "code": "RATE_LIMITED"}
CLIENT = ("198.51.100.4", 5555)


def starlette_app(verifier: Any, calls: list[str], fail_open: bool = False) -> KeyledgerMiddleware:
    async def stats(request: StarletteRequest) -> JSONResponse:
        calls.append(request.url.path)
        result = request.state.keyledger  # what the middleware verified
        return JSONResponse({"key_id": result.key_id, "website": request.path_params["website_id"]})

    async def search(request: StarletteRequest) -> JSONResponse:
        calls.append(request.url.path)
        result = verify_result(request.scope)
        return JSONResponse({"key_id": result.key_id if result else None})

    async def health(request: StarletteRequest) -> JSONResponse:
        calls.append(request.url.path)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[StarletteRoute("/websites/{website_id}/stats", stats), StarletteRoute("/search", search),
                            StarletteRoute("/healthz", health)])
    return KeyledgerMiddleware(app, verifier=verifier, scope="read:data", fail_open=fail_open, routes=[
        Route("/websites/{website_id}/stats", website_id="website_id"),
        Route("/search", website_id="site"),  # from the query: /search?site=site-a
        Route("/healthz", public=True),
    ])


@pytest.fixture
async def service(keyledger_server: ApiServer, verify_credential: str) -> AsyncIterator[AsyncKeyledger]:
    async with AsyncKeyledger(keyledger_server.url, verify_credential) as client:
        yield client


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=CLIENT), base_url="http://service.test")


async def test_starlette_only_valid_keys_reach_the_handlers(admin_client: Keyledger, service: AsyncKeyledger,
                                                            keyledger_server: ApiServer) -> None:
    good = admin_client.create("good", access=SITE_A, rate_limit=6)  # FORBIDDEN answers count too
    revoked = admin_client.create("revoked", access=SITE_A)
    admin_client.revoke(revoked.id)
    calls: list[str] = []
    async with asgi_client(starlette_app(service, calls)) as http:
        ok = await http.get("/websites/site-a/stats", headers={"Authorization": f"Bearer {good.secret}",
                                                               "user-agent": "browser/1"})
        assert ok.status_code == 200 and ok.json() == {"key_id": good.id, "website": "site-a"}
        assert (ok.headers["x-ratelimit-limit"], ok.headers["x-ratelimit-remaining"]) == ("6", "5")
        by_query = await http.get("/search", params={"site": "site-a"}, headers={"x-api-key": good.secret})
        assert by_query.status_code == 200 and by_query.json() == {"key_id": good.id}
        assert (await http.get("/healthz")).status_code == 200  # public: no key needed
        long_agent = await http.get("/search?site=site-a", headers={"x-api-key": good.secret, "user-agent": "u" * 900})
        assert long_agent.status_code == 200  # cut to what keyledger keeps, not refused
        assert calls == ["/websites/site-a/stats", "/search", "/healthz", "/search"]
        refusals = [
            ("/websites/site-a/stats", {}, 401, AUTH_REQUIRED),
            ("/websites/site-a/stats", {"x-api-key": good.secret[:-4] + "AAAA"}, 401, AUTH_REQUIRED),
            ("/websites/site-a/stats", {"x-api-key": revoked.secret}, 401, AUTH_REQUIRED),
            ("/websites/site-b/stats", {"x-api-key": good.secret}, 403, FORBIDDEN),
            ("/search?site=site-b", {"x-api-key": good.secret}, 403, FORBIDDEN),
            ("/search", {"x-api-key": good.secret}, 403, FORBIDDEN),  # a website-only key must name the site
            ("/search?site=" + "s" * 600, {"x-api-key": good.secret}, 403, FORBIDDEN),  # no site id is that long
            ("/search?site=site-a", {"x-api-key": "kl_" + "x" * 5000}, 401, AUTH_REQUIRED),
        ]
        for path, headers, status, body in refusals:
            refused = await http.get(path, headers=headers)
            assert (refused.status_code, refused.json()) == (status, body), path
        limited = await http.get("/websites/site-a/stats", headers={"x-api-key": good.secret})
        assert (limited.status_code, limited.json()) == (429, RATE_LIMITED)
        assert int(limited.headers["retry-after"]) >= 1 and limited.headers["x-ratelimit-remaining"] == "0"
        assert len(calls) == 4  # no refused request reached a handler
    auditor = admin_client.create("auditor", scopes=["read:export"], rate_limit=100_000)
    with Keyledger(keyledger_server.url, auditor.secret) as audit:
        def first_use() -> Any:
            return [r for r in audit.audit(key_id=good.id, kind="usage") if r.user_agent == "browser/1"]
        (record,) = await until(first_use, timeout=15, what="the middleware's usage event")
    assert (record.ip, record.website_id, record.outcome) == (CLIENT[0], "site-a", "VALID")


async def test_unreachable_keyledger_fails_closed_unless_configured_open() -> None:
    calls: list[str] = []
    async with AsyncKeyledger(f"http://127.0.0.1:{free_port()}", "klvc_x", retry=NO_RETRIES) as nowhere:
        async with asgi_client(starlette_app(nowhere, calls)) as http:
            closed = await http.get("/websites/site-a/stats", headers={"x-api-key": "kl_whatever"})
            assert closed.status_code == 503 and closed.json()["code"] == "UNAVAILABLE" and calls == []
        async with asgi_client(starlette_app(nowhere, calls, fail_open=True)) as http:
            opened = await http.get("/search", headers={"x-api-key": "kl_whatever"})
            assert opened.status_code == 200 and opened.json() == {"key_id": None}


def litestar_app(verifier: AsyncKeyledger, calls: list[str]) -> Litestar:
    @get("/websites/{website_id:str}/stats", guards=[requires_key("read:data", website_id="website_id")])
    async def stats(website_id: Annotated[str, PathParameter()], request: Request[Any, Any, Any]) -> dict[str, Any]:
        calls.append(website_id)
        return {"key_id": request.state.keyledger.key_id}

    @get("/errors", guards=[keyledger_guard], opt={"keyledger_scope": "read:analytics", "keyledger_data": "error_data"})
    async def errors() -> dict[str, Any]:
        calls.append("errors")
        return {"ok": True}

    @get("/healthz", guards=[keyledger_guard], opt={"keyledger_public": True})
    async def health() -> dict[str, Any]:
        return {"ok": True}

    return Litestar([stats, errors, health], plugins=[KeyledgerPlugin(verifier)])


async def test_litestar_guards_refuse_before_the_handler(admin_client: Keyledger, service: AsyncKeyledger) -> None:
    good = admin_client.create("litestar", access=[*SITE_A, Access(resource="error_data", scopes=["read:analytics"])],
                               rate_limit=3)
    analytics_only = admin_client.create("analytics", access=[Access(resource="analytics_data",
                                                                     scopes=["read:analytics"])])
    calls: list[str] = []
    async with asgi_client(litestar_app(service, calls)) as http:
        ok = await http.get("/websites/site-a/stats", headers={"x-api-key": good.secret})
        assert ok.status_code == 200 and ok.json() == {"key_id": good.id}
        assert ok.headers["x-ratelimit-limit"] == "3"
        assert (await http.get("/errors", headers={"x-api-key": good.secret})).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
        for path, headers, status, body in [
            ("/websites/site-a/stats", {}, 401, AUTH_REQUIRED),
            ("/websites/site-b/stats", {"x-api-key": good.secret}, 403, FORBIDDEN),
            ("/errors", {"x-api-key": analytics_only.secret}, 403, FORBIDDEN),  # analytics_data is not error_data
        ]:
            refused = await http.get(path, headers=headers)
            assert (refused.status_code, refused.json()) == (status, body), path
        limited = await http.get("/websites/site-a/stats", headers={"x-api-key": good.secret})
        assert (limited.status_code, limited.json()) == (429, RATE_LIMITED) and int(limited.headers["retry-after"]) >= 1
    assert calls == ["site-a", "errors"]


def test_websockets_need_a_valid_key_too(keyledger_server: ApiServer, verify_credential: str,
                                         admin_client: Keyledger) -> None:
    good = admin_client.create("websocket", access=SITE_A)

    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"key_id": websocket.state.keyledger.key_id})
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/sites/{site}/live", live)])
    verifier = AsyncKeyledger(keyledger_server.url, verify_credential)  # used in the test client's own loop
    protected = KeyledgerMiddleware(app, verifier=verifier, scope="read:data",
                                    routes=[Route("/sites/{site}/live", website_id="site")])
    with TestClient(protected) as client:
        with client.websocket_connect("/sites/site-a/live", headers={"x-api-key": good.secret}) as connection:
            assert connection.receive_json() == {"key_id": good.id}
        for path, headers in (("/sites/site-a/live", {}), ("/sites/site-b/live", {"x-api-key": good.secret})):
            with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(path, headers=headers):
                pass
            assert closed.value.code == 1008, path
