"""A value the access decision depends on must be given once: the ASGI middleware and the Litestar guards
refuse an ambiguous one with 400 before the app runs and without asking keyledger.

The attack: with ``Route("/search", website_id="site")`` and a key that may read only ``site-a``,
``/search?site=site-a&site=site-b`` was verified for ``site-a`` (the first value) while the handler served
``site-b`` (Starlette, FastAPI and Litestar hand a handler the last one). Each app here records what its
handlers served, and the verifier is the real client counting its calls; keyledger is a real server.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.params import PathParameter, QueryParameter
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from keyledger_client import Access, AsyncKeyledger, Keyledger
from keyledger_client.asgi import KeyledgerMiddleware, Route
from keyledger_client.litestar import KeyledgerPlugin, keyledger_guard, requires_key
from keyledger_client.models import VerifyResult
from tests.support.server import ApiServer

with warnings.catch_warnings():  # Starlette's test client (for the websocket case) would rather have another httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

SITE_A = [Access(resource="website", id="site-a", scopes=["read:data"])]
CLIENT = ("198.51.100.7", 5555)


def invalid(error: str) -> dict[str, Any]:
    return {"success": False, "error": error, "code": "VALIDATION_ERROR"}


REPEATED = invalid("Ambiguous request: query parameter 'site' is repeated")
SEMICOLON = invalid("Ambiguous request: query parameter 'site' reads differently with ';' as a separator")
EMPTY = invalid("Invalid request: 'site' is empty")
PATH_AND_QUERY = invalid("Ambiguous request: 'website_id' is both a path parameter and a query parameter")
AUTHORIZATION_REPEATED = invalid("Ambiguous request: header 'authorization' is repeated")
API_KEY_REPEATED = invalid("Ambiguous request: header 'x-api-key' is repeated")
TWO_KEYS = invalid("Ambiguous request: a key is given in both 'authorization' and 'x-api-key'")

# Ambiguous website ids in the query (the first is the reported attack): path, what the app is told.
AMBIGUOUS_QUERIES = [
    ("/search?site=site-a&site=site-b", REPEATED),
    ("/search?site=site-a&site=site-a", REPEATED),  # repeats are refused even when equal
    ("/search?site=site-a&%73ite=site-b", REPEATED),  # %73 is "s": the frameworks decode names
    ("/search?s%69te=site-a&site=site-b", REPEATED),
    ("/search?site=site-a&site=", REPEATED),  # an empty second value still counts
    ("/search?site=site-a&site", REPEATED),  # ... so does a bare name
    ("/search?site=site-b&x=1&site=site-a", REPEATED),
    ("/search?site=site-a;site=site-b", SEMICOLON),  # one value for "&" parsers, two for ";" ones
    ("/search?x=1;site=site-b&site=site-a", SEMICOLON),
    ("/search?site=", EMPTY),
    ("/search?site", EMPTY),
    ("/websites/site-a/stats?website_id=site-b", PATH_AND_QUERY),  # the path and the query conflict
    ("/websites/site-a/stats?website_id=site-a", PATH_AND_QUERY),  # ... or merely both name it
    ("/websites/site-a/stats?%77ebsite_id=site-b", PATH_AND_QUERY),
]


class CountingVerifier:
    """The real client, counting the verify calls made through it."""

    def __init__(self, client: AsyncKeyledger) -> None:
        self.client, self.calls = client, 0

    async def verify(self, key: str, scope: str, *, website_id: str | None = None, data: str | None = None,
                     ip: str | None = None, user_agent: str | None = None) -> VerifyResult:
        self.calls += 1
        return await self.client.verify(key, scope, website_id=website_id, data=data, ip=ip, user_agent=user_agent)


@pytest.fixture
async def verifier(keyledger_server: ApiServer, verify_credential: str) -> AsyncIterator[CountingVerifier]:
    async with AsyncKeyledger(keyledger_server.url, verify_credential) as client:
        yield CountingVerifier(client)


def asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app, client=CLIENT), base_url="http://service.test")


def starlette_app(verifier: CountingVerifier, served: list[str | None]) -> KeyledgerMiddleware:
    async def stats(request: StarletteRequest) -> JSONResponse:
        served.append(request.path_params["website_id"])
        return JSONResponse({"website": request.path_params["website_id"]})

    async def search(request: StarletteRequest) -> JSONResponse:
        site = request.query_params.get("site")  # as FastAPI reads ``site: str = Query()``: the last value
        served.append(site)
        return JSONResponse({"website": site})

    app = Starlette(routes=[StarletteRoute("/websites/{website_id}/stats", stats), StarletteRoute("/search", search)])
    return KeyledgerMiddleware(app, verifier=verifier, scope="read:data", routes=[
        Route("/websites/{website_id}/stats", website_id="website_id"),
        Route("/search", website_id="site"),
    ])


async def test_middleware_refuses_an_ambiguous_website_id_before_the_app(admin_client: Keyledger,
                                                                         verifier: CountingVerifier) -> None:
    reader = admin_client.create("site-a reader", access=SITE_A)
    key = {"x-api-key": reader.secret}
    served: list[str | None] = []
    async with asgi_client(starlette_app(verifier, served)) as http:
        assert (await http.get("/search?site=site-b", headers=key)).status_code == 403
        for path in ("/search?site=site-a", "/websites/site-a/stats"):
            ok = await http.get(path, headers=key)
            assert (ok.status_code, ok.json()) == (200, {"website": "site-a"}), path
        # Other names are not the parameter: the handler reads "site" exactly as it was verified.
        for path in ("/search?site%5B%5D=site-b&site=site-a", "/search?Site=site-b&site=site-a",
                     "/search?site=site-a&sitex=site-b"):
            ok = await http.get(path, headers=key)
            assert (ok.status_code, ok.json()) == (200, {"website": "site-a"}), path
        assert served == ["site-a"] * 5
        asked = verifier.calls
        for path, body in AMBIGUOUS_QUERIES:
            refused = await http.get(path, headers=key)
            assert (refused.status_code, refused.json()) == (400, body), path
        assert served == ["site-a"] * 5 and verifier.calls == asked  # no handler ran, keyledger was not asked


async def test_middleware_refuses_a_key_given_more_than_once(admin_client: Keyledger,
                                                             verifier: CountingVerifier) -> None:
    reader = admin_client.create("site-a reader", access=SITE_A)
    other = admin_client.create("global reader", scopes=["read:data"])
    served: list[str | None] = []
    cases: list[tuple[list[tuple[str, str]], dict[str, Any]]] = [
        ([("authorization", f"Bearer {reader.secret}"), ("authorization", f"Bearer {other.secret}")],
         AUTHORIZATION_REPEATED),
        ([("authorization", f"Bearer {reader.secret}"), ("authorization", "Basic dXNlcjpwdw==")],
         AUTHORIZATION_REPEATED),
        ([("x-api-key", reader.secret), ("x-api-key", other.secret)], API_KEY_REPEATED),
        ([("x-api-key", reader.secret), ("x-api-key", reader.secret)], API_KEY_REPEATED),
        ([("authorization", f"Bearer {reader.secret}"), ("x-api-key", other.secret)], TWO_KEYS),
        ([("authorization", f"Bearer {reader.secret}"), ("x-api-key", reader.secret)], TWO_KEYS),
    ]
    async with asgi_client(starlette_app(verifier, served)) as http:
        ok = await http.get("/search?site=site-a", headers=[("authorization", "Basic dXNlcjpwdw=="),
                                                            ("x-api-key", reader.secret)])
        assert ok.status_code == 200  # another scheme in Authorization is the app's, not a second key
        asked = verifier.calls
        for headers, body in cases:
            refused = await http.get("/search?site=site-a", headers=headers)
            assert (refused.status_code, refused.json()) == (400, body), [name for name, _ in headers]
        both = await http.get("/search?site=site-a&site=site-b", headers=cases[0][0])
        assert both.status_code == 400
        assert served == ["site-a"] and verifier.calls == asked


async def test_middleware_reads_header_names_in_any_case(admin_client: Keyledger,
                                                         verifier: CountingVerifier) -> None:
    """ASGI servers lower-case header names; an app that hands the middleware a scope of its own may not."""
    reader = admin_client.create("site-a reader", access=SITE_A)
    other = admin_client.create("global reader", scopes=["read:data"])
    served: list[str | None] = []
    app = starlette_app(verifier, served)

    async def call(headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": "/search", "raw_path": b"/search", "root_path": "",
                 "query_string": b"site=site-a", "headers": [(b"host", b"service.test"), *headers],
                 "client": CLIENT, "server": ("service.test", 80)}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    assert (await call([(b"X-Api-Key", reader.secret.encode())]))[0] == 200
    asked = verifier.calls
    for headers in ([(b"X-Api-Key", reader.secret.encode()), (b"x-api-key", other.secret.encode())],
                    [(b"Authorization", f"Bearer {reader.secret}".encode()), (b"X-API-KEY", other.secret.encode())]):
        status, body = await call(headers)
        assert status == 400 and b"VALIDATION_ERROR" in body, headers[0][0]
    assert served == ["site-a"] and verifier.calls == asked


def test_an_ambiguous_websocket_handshake_is_closed(keyledger_server: ApiServer, verify_credential: str,
                                                    admin_client: Keyledger) -> None:
    reader = admin_client.create("site-a reader", access=SITE_A)
    opened: list[str] = []

    async def live(websocket: WebSocket) -> None:
        opened.append(websocket.path_params["site"])
        await websocket.accept()
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/sites/{site}/live", live)])
    protected = KeyledgerMiddleware(app, verifier=AsyncKeyledger(keyledger_server.url, verify_credential),
                                    scope="read:data", routes=[Route("/sites/{site}/live", website_id="site")])
    with TestClient(protected) as client:
        for path in ("/sites/site-a/live?site=site-b", "/sites/site-b/live?site=site-a"):
            with pytest.raises(WebSocketDisconnect) as closed, \
                    client.websocket_connect(path, headers={"x-api-key": reader.secret}):
                pass
            assert closed.value.code == 1008, path
    assert opened == []


def litestar_app(verifier: CountingVerifier, served: list[str | None]) -> Litestar:
    @get("/websites/{website_id:str}/stats", guards=[requires_key("read:data", website_id="website_id")])
    async def stats(website_id: Annotated[str, PathParameter()]) -> dict[str, Any]:
        served.append(website_id)
        return {"website": website_id}

    @get("/search", guards=[requires_key("read:data", website_id="site")])
    async def search(site: Annotated[str | None, QueryParameter()] = None) -> dict[str, Any]:
        served.append(site)
        return {"website": site}

    @get("/report", guards=[keyledger_guard], opt={"keyledger_scope": "read:data", "keyledger_website_id": "site"})
    async def report(site: Annotated[str | None, QueryParameter()] = None) -> dict[str, Any]:
        served.append(site)
        return {"website": site}

    return Litestar([stats, search, report], plugins=[KeyledgerPlugin(verifier)])


async def test_litestar_guards_refuse_an_ambiguous_request_before_the_handler(admin_client: Keyledger,
                                                                              verifier: CountingVerifier) -> None:
    reader = admin_client.create("site-a reader", access=SITE_A)
    other = admin_client.create("global reader", scopes=["read:data"])
    key = {"x-api-key": reader.secret}
    served: list[str | None] = []
    async with asgi_client(litestar_app(verifier, served)) as http:
        assert (await http.get("/search?site=site-b", headers=key)).status_code == 403
        for path in ("/search?site=site-a", "/report?site=site-a", "/websites/site-a/stats",
                     "/search?site%5B%5D=site-b&site=site-a"):
            ok = await http.get(path, headers=key)
            assert (ok.status_code, ok.json()) == (200, {"website": "site-a"}), path
        asked = verifier.calls
        queries = [*AMBIGUOUS_QUERIES, *[(path.replace("/search", "/report"), body)
                                          for path, body in AMBIGUOUS_QUERIES if path.startswith("/search")]]
        for path, body in queries:
            refused = await http.get(path, headers=key)
            assert (refused.status_code, refused.json()) == (400, body), path
        for headers, body in [
            ([("x-api-key", reader.secret), ("x-api-key", other.secret)], API_KEY_REPEATED),
            ([("authorization", f"Bearer {other.secret}"), ("authorization", f"Bearer {reader.secret}")],
             AUTHORIZATION_REPEATED),
            ([("authorization", f"Bearer {reader.secret}"), ("x-api-key", other.secret)], TWO_KEYS),
        ]:
            refused = await http.get("/search?site=site-a", headers=headers)
            assert (refused.status_code, refused.json()) == (400, body), [name for name, _ in headers]
    assert served == ["site-a"] * 4 and verifier.calls == asked
