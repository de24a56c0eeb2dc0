"""Every refusal as an exception carrying keyledger's structured ``code`` (and the HTTP status)."""

from __future__ import annotations

import msgspec

from keyledger_client.models import ErrorBody


class KeyledgerError(Exception):
    """keyledger refused a call (``status``, ``code`` and ``message`` from its error body), or could not be
    reached (``status`` 0, ``code`` ``CONNECTION_ERROR``)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class AuthenticationError(KeyledgerError):
    """401 AUTH_REQUIRED: the client's credential is missing, unknown, revoked or expired."""


class PermissionDeniedError(KeyledgerError):
    """403 FORBIDDEN: the credential lacks the scope or resource."""


class NotFoundError(KeyledgerError):
    """404 NOT_FOUND."""


class ConflictError(KeyledgerError):
    """409 CONFLICT: a stale version (``If-Match``), a concurrent change or a change to a revoked key."""


class RateLimitedError(KeyledgerError):
    """429 RATE_LIMITED; ``retry_after`` says when to try again (seconds)."""


class ValidationError(KeyledgerError):
    """400/413/422 VALIDATION_ERROR: the request is malformed or a value is invalid."""


class UnavailableError(KeyledgerError):
    """503 UNAVAILABLE (or another 5xx): retry later."""


class KeyledgerConnectionError(KeyledgerError):
    """keyledger could not be reached or did not answer in time (after the retries allowed)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "CONNECTION_ERROR", message)


_BY_STATUS: dict[int, type[KeyledgerError]] = {
    400: ValidationError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 412: ConflictError, 413: ValidationError, 422: ValidationError, 429: RateLimitedError,
}
_decode_error = msgspec.json.Decoder(ErrorBody)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (only the delta-seconds form, which keyledger sends)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_from(status: int, body: bytes, retry_after: str | None = None) -> KeyledgerError:
    """The exception for an error response: its class by status, ``code`` and message from the body."""
    try:
        parsed = _decode_error.decode(body)
        code, message = parsed.code, parsed.error
    except (msgspec.DecodeError, msgspec.ValidationError):
        code, message = f"HTTP_{status}", body[:200].decode("utf-8", "replace") or "no body"
    cls = _BY_STATUS.get(status, UnavailableError if status >= 500 else KeyledgerError)
    return cls(status, code, message, retry_after_seconds(retry_after))
