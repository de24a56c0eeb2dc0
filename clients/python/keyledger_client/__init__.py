"""keyledger's Python client: :class:`Keyledger` (sync) and :class:`AsyncKeyledger` for verify, key
management and the audit trail; :mod:`keyledger_client.asgi` protects any ASGI app, and
:mod:`keyledger_client.litestar` adds a Litestar guard."""

from keyledger_client._calls import NO_RETRIES, RetryPolicy
from keyledger_client.aio import AsyncKeyledger
from keyledger_client.client import Keyledger
from keyledger_client.errors import (
    AuthenticationError,
    ConflictError,
    KeyledgerConnectionError,
    KeyledgerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
)
from keyledger_client.models import (
    Access,
    AuditRecord,
    BulkFilter,
    BulkOutcome,
    BulkResult,
    Credits,
    CreditsLeft,
    Key,
    KeyWithSecret,
    Owner,
    OwnerLeft,
    RateLimit,
    Refill,
    UsageBucket,
    UsageSeries,
    VerifyCode,
    VerifyResult,
)

__all__ = [
    "NO_RETRIES", "Access", "AsyncKeyledger", "AuditRecord", "AuthenticationError", "ConflictError", "Credits",
    "CreditsLeft", "Key", "Owner", "OwnerLeft",
    "KeyWithSecret", "Keyledger", "KeyledgerConnectionError", "KeyledgerError", "NotFoundError",
    "PermissionDeniedError", "RateLimit", "RateLimitedError", "Refill", "RetryPolicy", "UnavailableError",
    "ValidationError",
    "UsageBucket", "UsageSeries", "VerifyCode", "VerifyResult",
    "BulkFilter", "BulkOutcome", "BulkResult",
]
