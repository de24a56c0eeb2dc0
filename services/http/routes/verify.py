"""``POST /v1/verify``: may this key do this scope here? For other services; the hot path.

The route is lean: it reads the body and decodes it with msgspec itself (one pass, no signature
model), and answers with a pre-encoded ASGI response carrying the rate-limit headers, so it costs
little more than the trivial POST it is benchmarked against (``make bench``). It stays in
``/schema`` with both models: the response through ``responses``, the request body through
``verify_request``, a dependency that only documents it (the handler never asks for it, so Litestar
never runs it; Litestar takes a route's request body from a dependency's ``data`` when the handler
has none).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from keyledger.domain.access import DATA_KINDS, SCOPES
from keyledger.services.http.auth import Gate
from keyledger.services.http.deps import gate_of
from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.schemas import Access, RateLimitState, VerifyAnswer, VerifyRequest
from keyledger.services.observe.metrics import answered
from keyledger.services.verify.throttles import RateDecision
from keyledger.services.verify.verifier import Verdict

_decoder = msgspec.json.Decoder(VerifyRequest)
_encoder = msgspec.json.Encoder()
_HEADERS = ((b"content-type", b"application/json"),)


async def _documented_body(data: VerifyRequest) -> VerifyRequest:
    """The request body of ``POST /v1/verify``, for ``/schema`` only (never called)."""
    return data


@post("/v1/verify", status_code=200, security=[{"bearer": []}, {}],  # a verify credential (or admin key); none only
      dependencies={"verify_request": Provide(_documented_body)},    # in open mode
      responses={200: ResponseSpec(VerifyAnswer, description="Always 200 for a well-formed request"),
                 **error_responses(400, 401, 413, 429, 503)})
async def verify(request: Request[Any, Any, Any]) -> ASGIApp:
    """Always 200 for a well-formed request: ``valid``, ``code`` and why."""
    started = perf_counter()
    gate: Gate = gate_of(request)
    caller = await gate.identify_caller(request)
    ask = decode(await request.body())
    verdict, decision = await gate.verify(request, ask, caller)  # X-RateLimit-*: added by ratelimit_headers
    body = _encoder.encode(answer(verdict, decision))
    answered(verdict.code, perf_counter() - started)  # keyledger_verify_answers_total, keyledger_verify_seconds
    return _Answer(body)


class _Answer:
    """A 200 JSON response already encoded: the two ASGI messages, nothing else to build."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: HTTPResponseStartEvent = {"type": "http.response.start", "status": 200,
                                         "headers": [*_HEADERS, (b"content-length", str(len(self._body)).encode())]}
        await send(start)
        await send({"type": "http.response.body", "body": self._body, "more_body": False})


def decode(body: bytes) -> VerifyRequest:
    """The verify request in ``body``, or 400 saying what is wrong with it."""
    try:
        ask = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "VALIDATION_ERROR", f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise ApiError(400, "VALIDATION_ERROR", "the request body is not valid JSON") from None
    if ask.scope not in SCOPES:
        raise ApiError(400, "VALIDATION_ERROR", f"unknown scope {ask.scope!r}")
    if ask.data is not None and ask.data not in DATA_KINDS:
        raise ApiError(400, "VALIDATION_ERROR", f"unknown data kind {ask.data!r}")
    return ask


def answer(verdict: Verdict, decision: RateDecision | None) -> VerifyAnswer:
    """The response body for ``verdict`` (and the key's rate-limit state, when a key was identified)."""
    key, granted = verdict.key, verdict.granted_by
    return VerifyAnswer(
        valid=verdict.valid, code=verdict.code, reason=verdict.reason,
        key_id=key.key_id if key else None, organization_id=key.organization_id if key else None,
        scopes=list(verdict.scopes),
        granted_by=Access(resource=granted.resource, scopes=list(granted.scopes), id=granted.id) if granted else None,
        expires_at=key.expires_at if key else None,
        ratelimit=RateLimitState(limit=decision.limit, remaining=decision.remaining, reset=decision.reset)
        if decision else None,
    )


VERIFY_ROUTES = [verify]
