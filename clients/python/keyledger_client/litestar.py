"""Litestar integration: a plugin and guards (needs ``litestar``, which this package does not install).

::

    app = Litestar([stats, health], plugins=[KeyledgerPlugin(AsyncKeyledger(URL, VERIFY_CREDENTIAL))])

    @get("/websites/{website_id:str}/stats", guards=[requires_key("read:data", website_id="website_id")])
    async def stats(website_id: str, request: Request) -> dict: ...   # request.state.keyledger: the result

Or one guard for a whole app or router, configured per route through ``opt``: ``guards=[keyledger_guard]``
and ``opt={"keyledger_scope": "read:data", "keyledger_website_id": "website_id", "keyledger_data": ...}``;
``opt={"keyledger_public": True}`` opts a route out. Refusals answer the documented bodies (400
``VALIDATION_ERROR`` for a key or website id given more than once, by the middleware's rule:
:func:`keyledger_client.asgi.website_id_of`; 401 ``AUTH_REQUIRED``, 403 ``FORBIDDEN``, 429 ``RATE_LIMITED``
with ``Retry-After``) before the handler runs; keyledger unreachable → 503 unless the plugin was made with
``fail_open=True``.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins import InitPluginProtocol
from litestar.types import ASGIApp, Guard, Message, Receive, Scope, Send

from keyledger_client.asgi import (
    AUTH_REQUIRED,
    MAX_IP,
    MAX_USER_AGENT,
    REFUSALS,
    STATE_KEY,
    UNAVAILABLE,
    AmbiguousRequest,
    Verifies,
    as_result,
    out_of_bounds,
    presented_key,
    ratelimit_headers,
    retry_after,
    website_id_of,
)
from keyledger_client.errors import KeyledgerConnectionError, KeyledgerError, UnavailableError
from keyledger_client.models import VerifyResult

_PLUGIN_KEY = "keyledger_plugin"
Connection = ASGIConnection[Any, Any, Any, Any]


class KeyledgerRefused(Exception):
    """A request the guard refused: answered by the plugin's exception handler with the documented body."""

    def __init__(self, refusal: tuple[int, str, str], result: VerifyResult | None = None) -> None:
        super().__init__(refusal[1])
        self.refusal, self.result = refusal, result


def _refused(_: Request[Any, Any, Any], exc: KeyledgerRefused) -> Response[dict[str, Any]]:
    status, message, code = exc.refusal
    headers = {name.decode(): value.decode() for name, value in ratelimit_headers(exc.result)}
    if status in (429, 503):
        headers["retry-after"] = str(retry_after(exc.result, time.time) if status == 429 else 1)
    return Response({"success": False, "error": message, "code": code}, status_code=status, headers=headers)


def _ratelimit_headers(app: ASGIApp) -> ASGIApp:
    """Adds the verified key's ``X-RateLimit-*`` to the response of a request a guard let through."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            result = scope.get("state", {}).get(STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(result, VerifyResult):
                message["headers"] = [*message.get("headers", []), *ratelimit_headers(result)]
            await send(message)

        await app(scope, receive, sending)

    return middleware


class KeyledgerPlugin(InitPluginProtocol):
    """Makes ``verifier`` the guards' verifier, answers their refusals and adds ``X-RateLimit-*``.
    ``scope`` is :data:`keyledger_guard`'s default for routes whose ``opt`` names none."""

    def __init__(self, verifier: Verifies, *, scope: str | None = None, fail_open: bool = False) -> None:
        self.verifier, self.scope, self.fail_open = verifier, scope, fail_open

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state[_PLUGIN_KEY] = self
        app_config.exception_handlers[KeyledgerRefused] = _refused
        app_config.middleware.append(_ratelimit_headers)
        return app_config


async def _check(connection: Connection, scope: str | None, website_param: str | None, data: str | None) -> None:
    plugin: KeyledgerPlugin = connection.app.state[_PLUGIN_KEY]
    needed = scope or plugin.scope
    if needed is None:
        raise ValueError(f"no keyledger scope for {connection.url.path}: set opt['keyledger_scope']")
    try:
        key = presented_key(connection.scope["headers"])
        website = website_id_of(website_param, connection.path_params, connection.scope["query_string"]) \
            if website_param else None
    except AmbiguousRequest as exc:
        raise KeyledgerRefused(exc.refusal) from None
    if key is None:
        raise KeyledgerRefused(AUTH_REQUIRED)
    bounds = out_of_bounds(key, website)
    if bounds is not None:
        raise KeyledgerRefused(bounds)
    try:
        result = as_result(await plugin.verifier.verify(
            key, needed, website_id=website, data=data,
            ip=connection.client.host[:MAX_IP] if connection.client else None,
            user_agent=(connection.headers.get("user-agent") or "")[:MAX_USER_AGENT] or None))
    except KeyledgerError as exc:
        if plugin.fail_open and isinstance(exc, KeyledgerConnectionError | UnavailableError):
            return
        raise KeyledgerRefused(UNAVAILABLE) from None
    if not result.valid:
        raise KeyledgerRefused(REFUSALS.get(result.code, AUTH_REQUIRED), result)
    connection.scope.setdefault("state", {})[STATE_KEY] = result


def requires_key(scope: str, *, website_id: str | None = None, data: str | None = None) -> Guard:
    """A guard: the request's key must hold ``scope`` (on the website named by the path or query parameter
    ``website_id``, for the ``data`` kind)."""

    async def guard(connection: Connection, _: BaseRouteHandler) -> None:
        await _check(connection, scope, website_id, data)

    return guard


async def keyledger_guard(connection: Connection, handler: BaseRouteHandler) -> None:
    """A guard configured by each route's ``opt`` (``keyledger_scope``, ``keyledger_website_id``,
    ``keyledger_data``; ``keyledger_public`` opts out)."""
    opt = handler.opt
    if opt.get("keyledger_public"):
        return
    await _check(connection, opt.get("keyledger_scope"), opt.get("keyledger_website_id"), opt.get("keyledger_data"))
