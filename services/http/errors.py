"""Every failure as the structured body ``{"success": false, "error": ..., "code": ...}``."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec

from keyledger.domain.errors import (
    Busy,
    ConcurrencyError,
    DomainError,
    Forbidden,
    KeyAlreadyExists,
    KeyNotFound,
    KeyRevokedError,
    ValidationError,
)
from keyledger.domain.redaction import redact
from keyledger.services.http.schemas import ErrorBody
from keyledger.services.storage.database import StorageError

log = logging.getLogger("keyledger.http")

MAX_BODY_BYTES = 64 * 1024  # the largest request body any route reads (413 beyond it)

_CODES = {400: "VALIDATION_ERROR", 401: "AUTH_REQUIRED", 403: "FORBIDDEN", 404: "NOT_FOUND",
          405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT", 409: "CONFLICT", 412: "CONFLICT", 413: "VALIDATION_ERROR",
          415: "VALIDATION_ERROR", 422: "VALIDATION_ERROR", 429: "RATE_LIMITED"}
_DOMAIN_STATUS: dict[type[DomainError], int] = {
    ValidationError: 400, Forbidden: 403, Busy: 429, KeyNotFound: 404, KeyAlreadyExists: 409, KeyRevokedError: 409,
    ConcurrencyError: 409,
}


class ApiError(Exception):
    """An HTTP refusal with its status, machine code and human message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def auth_required(message: str = "Authentication required") -> ApiError:
    """401 AUTH_REQUIRED (missing, malformed, unknown, revoked or expired key)."""
    return ApiError(401, "AUTH_REQUIRED", message)


def forbidden(message: str = "Insufficient permissions") -> ApiError:
    """403 FORBIDDEN (scope or resource not granted)."""
    return ApiError(403, "FORBIDDEN", message)


def error_body(code: str, message: str) -> ErrorBody:
    """The structured error body; a message that quotes what the caller sent (``key <id> not found``) never
    carries a secret: token-shaped parts are cut to their start (``domain.redaction``)."""
    return ErrorBody(error=redact(message), code=code)


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response[ErrorBody]:
    """The structured error body with ``status``."""
    return Response(error_body(code, message), status_code=status, media_type=MediaType.JSON, headers=headers)


def refusal_of(exc: Exception) -> ApiError:
    """What answers ``exc`` raised by a handler: the same status, code, message and headers as the
    exception handlers below send (a route served outside Litestar's router uses this directly).
    An unexpected exception is logged here and becomes 500 with no internals."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, DomainError):
        status = next((s for cls, s in _DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
        return ApiError(status, exc.code, str(exc), headers={"Retry-After": "1"} if status == 429 else None)
    if isinstance(exc, StorageError):
        log.warning("storage unavailable: %s", exc)
        return ApiError(503, "UNAVAILABLE", "the database is unavailable; retry later", headers={"Retry-After": "1"})
    log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return ApiError(500, "INTERNAL_ERROR", "internal error")


def _refusal_response(_: Request, exc: Exception) -> Response[ErrorBody]:  # type: ignore[type-arg]
    """The exception handler of everything ``refusal_of`` knows."""
    refusal = refusal_of(exc)
    return error_response(refusal.status, refusal.code, refusal.message, headers=refusal.headers)


_MEANING = {
    400: "VALIDATION_ERROR: the request is malformed or a value is invalid",
    401: "AUTH_REQUIRED: missing, malformed, unknown, revoked or expired key",
    403: "FORBIDDEN: the key lacks the scope or resource",
    404: "NOT_FOUND: no such key (or not one this caller may see)",
    408: "REQUEST_TIMEOUT: the request body did not arrive within KEYLEDGER_BODY_TIMEOUT seconds; the "
         "connection is closed",
    409: "CONFLICT: stale If-Match, a concurrent change, or a change to a revoked key",
    413: f"VALIDATION_ERROR: the body is larger than {MAX_BODY_BYTES // 1024} KiB",
    429: "RATE_LIMITED: over the key's limit, or too many failed attempts (see Retry-After)",
    503: "UNAVAILABLE: the database is unreachable, retry after Retry-After seconds (on /readyz: NOT_READY, "
         "the key cache has not caught up or NATS is disconnected)",
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the error body for each of ``statuses`` (for a handler's ``responses``)."""
    return {status: ResponseSpec(data_container=ErrorBody, description=_MEANING[status], generate_examples=False)
            for status in statuses}


def handle_http_exception(_: Request, exc: HTTPException) -> Response[ErrorBody]:  # type: ignore[type-arg]
    """Framework errors (bad JSON, wrong types, 404 routes, 413...) → the structured body."""
    message = str(exc.detail)
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict) and first.get("message"):
            where = f" ({first['key']})" if first.get("key") else ""
            message = f"{message}: {first['message']}{where}"
    code = _CODES.get(exc.status_code, "ERROR" if exc.status_code < 500 else "INTERNAL_ERROR")
    return error_response(exc.status_code, code, message, headers=exc.headers)


# ApiError → its body; domain refusals → 400/403/404/409/429 (429 with ``Retry-After``); Postgres unreachable or
# refusing → 503 UNAVAILABLE (the cause logged, not sent); anything else → 500 with no internals in the body
EXCEPTION_HANDLERS = {
    ApiError: _refusal_response, DomainError: _refusal_response, StorageError: _refusal_response,
    HTTPException: handle_http_exception, Exception: _refusal_response,
}
