"""``POST /v1/verify``: may this key do this scope here? For other services; the hot path.

Served as a raw ASGI route (:func:`serve`), ahead of Litestar's router: the app hands it every
``POST /v1/verify`` before routing (``services.http.app.KeyledgerApp``), and it reads the headers from
the scope once, decodes the body with msgspec, and writes the answer (or the structured error body)
with ``X-Request-Id`` and ``X-RateLimit-*`` itself, so it costs about what a trivial POST costs
(``make bench``). The Litestar handler below documents the operation in ``/schema`` with both models
(the response through ``responses``, the request body through ``verify_request``, a dependency that
only documents it: the handler never asks for it, so Litestar never runs it) and answers the same way
through the same :func:`respond` wherever the router still reaches it (``POST /v1/verify/``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import msgspec
from litestar import Request, post
from litestar.di import Provide
from litestar.openapi import ResponseSpec
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send

from keyledger.services.http.auth import Connection, Gate, ScopeConnection
from keyledger.services.http.deps import gate_of
from keyledger.services.http.errors import MAX_BODY_BYTES, ApiError, error_body, error_responses, refusal_of
from keyledger.services.http.ratelimit_headers import response_headers, scope_request_id
from keyledger.services.http.schemas import VerifyAnswer, VerifyRequest
from keyledger.services.observe.logs import begin_request
from keyledger.services.observe.metrics import answered
from keyledger.services.verify.answer import answer

_decoder = msgspec.json.Decoder(VerifyRequest)
_encoder = msgspec.json.Encoder()
_HEADERS = ((b"content-type", b"application/json"),)
VERIFY_PATH = "/v1/verify"


async def _documented_body(data: VerifyRequest) -> VerifyRequest:
    """The request body of ``POST /v1/verify``, for ``/schema`` only (never called)."""
    return data


@post(VERIFY_PATH, status_code=200, security=[{"bearer": []}, {}],  # a verify credential (or admin key); none only
      dependencies={"verify_request": Provide(_documented_body)},    # in open mode
      responses={200: ResponseSpec(VerifyAnswer, description="Always 200 for a well-formed request"),
                 **error_responses(400, 401, 413, 429, 503)})
async def verify(request: Request[Any, Any, Any]) -> ASGIApp:
    """Always 200 for a well-formed request: ``valid``, ``code`` and why."""
    return _Answer(await respond(gate_of(request), request, request.body))  # X-RateLimit-*: ratelimit_headers


async def respond(gate: Gate, connection: Connection, body: Callable[[], Awaitable[bytes]]) -> bytes:
    """The encoded answer to a verify call (its caller authenticated first, then its ``body`` read and
    handed to the verify flow), or the refusal raised as an exception."""
    started = perf_counter()
    caller = await gate.identify_caller(connection)
    ask = decode(await body())
    call = gate.call(connection, key=ask.key, scope=ask.scope, website_id=ask.website_id, data=ask.data, ip=ask.ip,
                     user_agent=ask.user_agent, caller=caller, cost=ask.cost)
    verdict, decision, credits, owner = await gate.verify(connection, call)
    encoded = _encoder.encode(answer(verdict, decision, credits, owner))
    answered(verdict.code, perf_counter() - started)  # keyledger_verify_answers_total, keyledger_verify_seconds
    return encoded


class ClientGone(Exception):
    """The client disconnected before its request body arrived: nothing to answer."""


async def serve(gate: Gate, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/verify`` as a plain ASGI app: the answer, or the structured error body the exception
    handlers would send, with ``X-Request-Id`` (and the key's ``X-RateLimit-*`` once it was identified)."""
    request_id = scope_request_id(scope)
    begin_request(request_id)  # log lines written for this request carry its id

    async def body() -> bytes:
        return await read_body(scope, receive)

    extra: dict[str, str] | None = None
    try:
        status, payload = 200, await respond(gate, ScopeConnection(scope), body)
    except ClientGone:
        return
    except Exception as exc:  # what the app's exception handlers answer for it
        status, extra, payload = _refused(exc)
    headers = [*_HEADERS, (b"content-length", str(len(payload)).encode()), *response_headers(scope, request_id)]
    if extra:
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _refused(exc: Exception) -> tuple[int, dict[str, str] | None, bytes]:
    """The status, extra headers and encoded body that refuse ``exc``. Here, not in :func:`serve`: a frame
    that keeps the exception is held by the exception's own traceback, and that cycle would keep the
    request's ``send`` (the server's connection, with a body still unread) alive until the garbage collector
    runs: a connection answered 408 ``Connection: close`` would stay open."""
    refusal = refusal_of(exc)
    return refusal.status, refusal.headers, _encoder.encode(error_body(refusal.code, refusal.message))


async def read_body(scope: Scope, receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond it, as the router's routes answer)."""
    declared = next((value for name, value in scope["headers"] if name.lower() == b"content-length"), None)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "VALIDATION_ERROR", f"the request body is larger than {limit // 1024} KiB")


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
    """The verify request in ``body`` (its shape; its values are checked by ``Gate.call``, as every
    transport's are), or 400 saying what is wrong with it."""
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "VALIDATION_ERROR", f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise ApiError(400, "VALIDATION_ERROR", "the request body is not valid JSON") from None


VERIFY_ROUTES = [verify]
