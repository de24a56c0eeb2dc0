"""Headers of every response, errors included: ``X-Request-Id`` (the caller's, else one made up), and the
rate-limit headers of an authenticated request. The request id also marks the request's log lines."""

from __future__ import annotations

import re

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from keyledger.domain.usage import FIELD_LIMITS
from keyledger.services.observe.ids import new_id
from keyledger.services.observe.logs import begin_request, secret_shaped
from keyledger.services.verify.throttles import RateDecision

DECISION_STATE_KEY = _STATE_KEY = "keyledger_ratelimit"  # where the decision waits in the request state
_ID_LENGTH = FIELD_LIMITS["request_id"]
_FAIR_ID = re.compile(rb"[\x21-\x7e]{1,%d}" % _ID_LENGTH)  # visible ASCII: safe to echo in a header and to log


def scope_request_id(scope: Scope) -> str:
    """The caller's ``x-request-id`` (trimmed to the 100 characters the audit trail keeps; ignored unless
    visible ASCII, and when it looks like a key's secret, which would then reach the audit trail and the
    logs), else one made up once for this request."""
    state = scope.setdefault("state", {})
    found = state.get("request_id")
    if found is None:
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").strip()[:_ID_LENGTH]
        fair = given.decode("ascii") if _FAIR_ID.fullmatch(given) else ""
        found = state["request_id"] = fair if fair and not secret_shaped(fair) else new_id()
    return str(found)


def attach_decision(scope: Scope, decision: RateDecision) -> None:
    """Make ``decision``'s ``X-RateLimit-*`` headers go out with whatever response follows the request
    of ``scope``."""
    scope.setdefault("state", {})[_STATE_KEY] = decision


def response_headers(scope: Scope, request_id: str) -> list[tuple[bytes, bytes]]:
    """``X-Request-Id`` and, when a rate-limit decision was attached, its ``X-RateLimit-*`` headers."""
    headers = [(b"x-request-id", request_id.encode())]
    decision = scope.get("state", {}).get(_STATE_KEY)
    if isinstance(decision, RateDecision):
        headers += [(k.lower().encode(), v.encode()) for k, v in decision.headers().items()]
    return headers


def ratelimit_headers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware adding the attached decision's headers to the response, errors included."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        request_id = scope_request_id(scope)
        begin_request(request_id)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *response_headers(scope, request_id)]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
