"""Domain errors: every refusal of the key model is one of these, with a clear message."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises; ``code`` is the machine-readable kind."""

    code = "DOMAIN_ERROR"


class ValidationError(DomainError):
    """A command's input is invalid (unknown scope, empty name, out-of-range value...)."""

    code = "VALIDATION_ERROR"


class KeyNotFound(DomainError):
    """The command names a key that has no events."""

    code = "NOT_FOUND"


class KeyAlreadyExists(DomainError):
    """A create command names a key id that already has events."""

    code = "CONFLICT"


class KeyRevokedError(DomainError):
    """The key is revoked; revocation is irreversible, so nothing else may change it."""

    code = "CONFLICT"


class ConcurrencyError(DomainError):
    """Another writer appended to the stream first (optimistic concurrency conflict)."""

    code = "CONFLICT"


class Forbidden(DomainError):
    """The acting key may not do this (e.g. grant a scope it does not hold itself)."""

    code = "FORBIDDEN"


class Busy(DomainError):
    """Too much work of this kind is in progress (e.g. argon2 hashing); retry shortly."""

    code = "RATE_LIMITED"
