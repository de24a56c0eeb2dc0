"""The rate-limit headers on every response of an authenticated request, errors included."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from keyledger.services.verify.throttles import RateDecision

DECISION_STATE_KEY = _STATE_KEY = "keyledger_ratelimit"  # where the decision waits in the request state


def attach_decision(request: ASGIConnection[Any, Any, Any, Any], decision: RateDecision) -> None:
    """Make ``decision``'s ``X-RateLimit-*`` headers go out with whatever response follows."""
    request.scope.setdefault("state", {})[_STATE_KEY] = decision


def ratelimit_headers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware adding the attached decision's headers to the response, errors included."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            decision = scope.get("state", {}).get(_STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(decision, RateDecision):
                extra = [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
