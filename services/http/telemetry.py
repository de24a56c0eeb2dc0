"""What an API process reports: the key-command timer and ``GET /metrics`` (Prometheus text format), for a
verify credential or an ``admin:apikeys`` key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from time import perf_counter
from typing import Any

from litestar import Request, Response, get
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from keyledger.services.http.deps import components_of, gate_of
from keyledger.services.http.errors import error_responses
from keyledger.services.http.guards import SECURITY
from keyledger.services.observe import metrics

log = logging.getLogger("keyledger.http")


def timed(command: str) -> Callable[[ASGIApp], ASGIApp]:
    """Route middleware: ``keyledger_command_seconds{command, status}`` for each call of the route
    (authentication included)."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def timer(scope: Scope, receive: Receive, send: Send) -> None:
            started, status = perf_counter(), [500]

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                seconds = perf_counter() - started
                metrics.COMMAND_SECONDS.labels(command, f"{status[0] // 100}xx").observe(seconds)
                log.info("key %s answered %d", command, status[0],
                         extra={"command": command, "status": status[0], "ms": round(seconds * 1000, 1)})

        return timer

    return middleware


async def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A verify credential (or ``KEYLEDGER_VERIFY_TOKEN``) or an ``admin:apikeys`` key; never open."""
    gate = gate_of(connection)
    if await gate.identify_caller(connection) == "open":  # verify is open: metrics still are not
        await gate.authenticate(connection, ("admin:apikeys",))


@get("/metrics", guards=[metrics_guard], security=SECURITY, include_in_schema=True, media_type=metrics.CONTENT_TYPE,
     responses=error_responses(401, 403, 429, 503))
async def metrics_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus metrics of this process (and, under ``serve --workers N``, of every API worker)."""
    gauges = components_of(request.app.state).gauges
    if gauges is not None:
        await gauges.sample()
    body = await asyncio.to_thread(metrics.exposition)
    return Response(body, media_type=metrics.CONTENT_TYPE)


METRICS_ROUTES = [metrics_page]
