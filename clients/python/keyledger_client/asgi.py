"""ASGI middleware that lets only valid keys reach your app (Starlette, FastAPI, Litestar, any ASGI app).

::

    app = KeyledgerMiddleware(app, verifier=AsyncKeyledger(URL, VERIFY_CREDENTIAL), scope="read:data",
                              routes=[Route("/websites/{website_id}/stats", website_id="website_id"),
                                      Route("/healthz", public=True)])

Each request's key comes from ``Authorization: Bearer`` or ``x-api-key`` and is verified for the scope of
the first :class:`Route` whose path matches (else the middleware's own ``scope``), with the website id from
a path capture or a query parameter and the route's data kind; the end client's IP and user agent go along
for the audit trail. Refusals are answered here, with the documented bodies, and never reach the app
(a refused websocket handshake is closed with 1008, which the client sees as 403):
400 ``VALIDATION_ERROR`` for an ambiguous request (:func:`presented_key`, :func:`website_id_of`: a key or
website id given more than once, before anything is verified), 401 ``AUTH_REQUIRED``, 403 ``FORBIDDEN``,
429 ``RATE_LIMITED`` with ``Retry-After``. On success the
:class:`~keyledger_client.VerifyResult` is in ``scope["state"]["keyledger"]`` (``request.state.keyledger``)
and the response gets ``X-RateLimit-*``. If keyledger cannot be reached, requests get 503 ``UNAVAILABLE``
(``fail_open=True`` lets them through instead, with no result in the state; a refusal of the middleware's
own credential is never failed open).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl

import msgspec

from keyledger_client.errors import KeyledgerConnectionError, KeyledgerError, UnavailableError
from keyledger_client.models import RateLimit, VerifyResult

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]  # any framework's app (their scope and message types differ)
STATE_KEY = "keyledger"

AUTH_REQUIRED = (401, "Authentication required", "AUTH_REQUIRED")
FORBIDDEN = (403, "Insufficient permissions", "FORBIDDEN")
RATE_LIMITED = (429, "Rate limit exceeded", "RATE_LIMITED")
UNAVAILABLE = (503, "The key service is unavailable; retry later", "UNAVAILABLE")
REFUSALS = {"MALFORMED": AUTH_REQUIRED, "NOT_FOUND": AUTH_REQUIRED, "REVOKED": AUTH_REQUIRED,
             "EXPIRED": AUTH_REQUIRED, "FORBIDDEN": FORBIDDEN, "RATE_LIMITED": RATE_LIMITED,
             "UNAVAILABLE": UNAVAILABLE}
Refusal = tuple[int, str, str]  # status, message, code
Refused = tuple[Refusal, VerifyResult | None]  # and the verify result behind it, when there was one
_PARAM = re.compile(r"\{(\w+)(:path)?\}")


class Verifies(Protocol):
    """What answers verify questions: :class:`~keyledger_client.AsyncKeyledger` (over HTTP), or keyledger's
    ``InProcessVerifier`` (``keyledger.services.inprocess.verifier``: no network hop), whose answers have the
    same fields."""

    async def verify(self, key: str, scope: str, *, website_id: str | None = None, data: str | None = None,
                     ip: str | None = None, user_agent: str | None = None) -> object: ...


def as_result(answer: object) -> VerifyResult:
    """``answer`` as a :class:`VerifyResult` (an in-process verifier's answer has the same fields)."""
    if isinstance(answer, VerifyResult):
        return answer
    return msgspec.convert(msgspec.to_builtins(answer), VerifyResult)


class Route:
    """What a path needs: ``scope`` (default: the middleware's), the website id from the path capture or
    query parameter named ``website_id``, the ``data`` kind; ``public=True`` opts the path out (no key
    needed, nothing verified). ``path`` is a template: ``{name}`` matches one segment, ``{name:path}`` the
    rest; ``methods`` limits the route to those methods."""

    def __init__(self, path: str, *, scope: str | None = None, website_id: str | None = None,
                 data: str | None = None, public: bool = False, methods: Sequence[str] | None = None) -> None:
        self.path, self.scope, self.website_id, self.data, self.public = path, scope, website_id, data, public
        self.methods = {m.upper() for m in methods} if methods else None
        pattern, end = "", 0
        for match in _PARAM.finditer(path):
            pattern += re.escape(path[end:match.start()])
            pattern += f"(?P<{match.group(1)}>.+)" if match.group(2) else f"(?P<{match.group(1)}>[^/]+)"
            end = match.end()
        self._regex = re.compile(pattern + re.escape(path[end:]) + r"\Z")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path captures when this route covers ``method`` and ``path``; else None."""
        if self.methods is not None and method not in self.methods:
            return None
        found = self._regex.match(path)
        return found.groupdict() if found else None


class AmbiguousRequest(ValueError):
    """A value the access decision depends on that the request gives more than once (or that frameworks
    could read differently), or gives empty: refused with 400 ``VALIDATION_ERROR`` before anything is
    verified, because the value checked might not be the one the app acts on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.refusal: Refusal = (400, message, "VALIDATION_ERROR")


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``x-api-key: <key>`` (header names in any case), from the
    request's raw header list. Raises :class:`AmbiguousRequest` when either header is repeated (servers and
    frameworks differ on which copy they keep) or both carry a key; another scheme in ``Authorization``
    (``Basic ...``) is the app's own and not a key."""
    authorization: list[bytes] = []
    api_keys: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            authorization.append(value)
        elif lowered == b"x-api-key":
            api_keys.append(value)
    for header, values in (("authorization", authorization), ("x-api-key", api_keys)):
        if len(values) > 1:
            raise AmbiguousRequest(f"Ambiguous request: header '{header}' is repeated")
    bearer = None
    if authorization:
        scheme, _, credential = authorization[0].decode("latin-1").partition(" ")
        bearer = credential.strip() if scheme.lower() == "bearer" else None
    api_key = api_keys[0].decode("latin-1").strip() if api_keys else None
    if bearer and api_key:
        raise AmbiguousRequest("Ambiguous request: a key is given in both 'authorization' and 'x-api-key'")
    return bearer or api_key or None


def website_id_of(name: str, path_params: Mapping[str, object], query_string: bytes) -> str | None:
    """The website id a request names in its path parameter or query parameter ``name``; None when it names
    none. The query is read exactly as Starlette, FastAPI and Litestar read it (``&``-separated, names and
    values percent-decoded, ``+`` as a space, blank values kept), so the value checked is the value the
    handler gets. Raises :class:`AmbiguousRequest` when the parameter is repeated in the query (even with
    equal values or a blank one: frameworks differ on which copy a handler gets), when the query would give
    other values with ``;`` as a separator too, when it is both a path and a query parameter (even equal),
    or when it is empty."""
    query = query_string.decode("latin-1")
    values = [value for key, value in parse_qsl(query, keep_blank_values=True) if key == name]
    if len(values) > 1:
        raise AmbiguousRequest(f"Ambiguous request: query parameter '{name}' is repeated")
    split = [value for part in query.split("&")
             for key, value in parse_qsl(part, keep_blank_values=True, separator=";") if key == name]
    if split != values:
        raise AmbiguousRequest(f"Ambiguous request: query parameter '{name}' reads differently with ';' as a separator")
    if name in path_params:
        if values:
            raise AmbiguousRequest(f"Ambiguous request: '{name}' is both a path parameter and a query parameter")
        values = [str(path_params[name])]
    if values and not values[0]:
        raise AmbiguousRequest(f"Invalid request: '{name}' is empty")
    return values[0] if values else None


MAX_KEY, MAX_WEBSITE_ID, MAX_USER_AGENT, MAX_IP = 4096, 500, 300, 100  # what keyledger accepts (or keeps)


def out_of_bounds(key: str, website_id: str | None) -> tuple[int, str, str] | None:
    """The refusal for a key or website id longer than keyledger accepts (which would otherwise be its 400):
    no valid key is that long, and no website id either."""
    if len(key) > MAX_KEY:
        return AUTH_REQUIRED
    if website_id is not None and len(website_id) > MAX_WEBSITE_ID:
        return FORBIDDEN
    return None


def error_body(status: int, message: str, code: str) -> bytes:
    """The documented refusal body."""
    return json.dumps({"success": False, "error": message, "code": code}, separators=(",", ":")).encode()


def ratelimit_headers(result: VerifyResult | None) -> list[tuple[bytes, bytes]]:
    """``X-RateLimit-*`` for the verified key (none when no key was identified)."""
    limit: RateLimit | None = result.ratelimit if result is not None else None
    if limit is None:
        return []
    return [(name.lower().encode(), value.encode()) for name, value in limit.headers().items()]


def retry_after(result: VerifyResult | None, clock: Callable[[], float]) -> int:
    """Seconds until the key's window ends (at least 1)."""
    if result is None or result.ratelimit is None:
        return 1
    return max(1, int(result.ratelimit.reset - clock()) + 1)


async def refuse(send: Send, refusal: tuple[int, str, str], result: VerifyResult | None = None,
                 clock: Callable[[], float] = time.time) -> None:
    """Answer ``refusal`` (status, message, code) with its body, rate-limit headers and, for 429 and 503,
    ``Retry-After``."""
    status, message, code = refusal
    body = error_body(status, message, code)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *ratelimit_headers(result)]
    if status in (429, 503):
        headers.append((b"retry-after", str(retry_after(result, clock) if status == 429 else 1).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class KeyledgerMiddleware:
    """Verifies every request's key before the app sees it (see the module's documentation)."""

    def __init__(self, app: ASGIApp, *, verifier: Verifies, scope: str | None = None,
                 routes: Sequence[Route] = (), data: str | None = None, fail_open: bool = False,
                 client_ip: Callable[[Scope], str | None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.app, self.verifier, self.routes, self.fail_open, self.clock = app, verifier, list(routes), fail_open, clock
        self.default = Route("{any:path}", scope=scope, data=data)
        self.client_ip = client_ip or _peer

    def rule(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route that covers this request (the default when none does) and its path captures."""
        for route in self.routes:
            captures = route.match(method, path)
            if captures is not None:
                return route, captures
        return self.default, {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        websocket = scope["type"] == "websocket"
        route, captures = self.rule("GET" if websocket else scope["method"], scope["path"])
        if route.public:
            await self.app(scope, receive, send)
            return
        result = await self._check(scope, route, captures)
        if isinstance(result, tuple):  # refused: the app never runs
            refusal, known = result
            if websocket:  # before the handshake is accepted: the client gets 403
                await send({"type": "websocket.close", "code": 1008, "reason": refusal[2]})
            else:
                await refuse(send, refusal, known, self.clock)
            return
        if result is not None:
            scope.setdefault("state", {})[STATE_KEY] = result
        extra = ratelimit_headers(result) if not websocket else []
        await self.app(scope, receive, with_headers(send, extra))

    async def _check(self, scope: Scope, route: Route, captures: dict[str, str]) -> VerifyResult | Refused | None:
        """The valid result, the refusal (and the result behind it), or None (keyledger unreachable and
        ``fail_open``)."""
        needed = route.scope or self.default.scope
        if needed is None:
            raise ValueError(f"no scope for {scope['path']}: give the middleware a scope or the route one")
        raw_headers = scope.get("headers") or []
        try:
            key = presented_key(raw_headers)
            website_id = website_id_of(route.website_id, captures, scope.get("query_string", b"")) \
                if route.website_id else None
        except AmbiguousRequest as exc:
            return exc.refusal, None
        if key is None:
            return AUTH_REQUIRED, None
        bounds = out_of_bounds(key, website_id)
        if bounds is not None:
            return bounds, None
        headers = dict(raw_headers)
        user_agent = headers.get(b"user-agent", b"").decode("latin-1")[:MAX_USER_AGENT] or None
        ip = self.client_ip(scope)
        try:
            result = as_result(await self.verifier.verify(key, needed, website_id=website_id,
                                                          data=route.data or self.default.data,
                                                          ip=ip[:MAX_IP] if ip else None, user_agent=user_agent))
        except KeyledgerError as exc:
            if self.fail_open and isinstance(exc, KeyledgerConnectionError | UnavailableError):
                return None
            return UNAVAILABLE, None
        if not result.valid:
            return REFUSALS.get(result.code, AUTH_REQUIRED), result
        return result


def with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` adding ``extra`` to the response's headers."""
    if not extra:
        return send

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":  # (websocket messages pass as they are)
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)
    return sending


def verify_result(scope: Scope) -> VerifyResult | None:
    """The verify result the middleware left for this request (None on public routes or when failing open)."""
    found = scope.get("state", {}).get(STATE_KEY)
    return found if isinstance(found, VerifyResult) else None


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
