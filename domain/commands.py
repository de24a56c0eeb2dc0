"""Commands on a key and their input validation (pure; raise ValidationError)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.domain.access import AccessEntry, validate_access
from keyledger.domain.errors import ValidationError

MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 500
MAX_GRACE_SECONDS = 7 * 24 * 3600
MAX_RATE_LIMIT = 10_000_000


class CreateKey(msgspec.Struct, frozen=True, kw_only=True):
    """Create key ``key_id``; the caller generated the token and hashed its secret."""

    key_id: str
    name: str
    organization_id: str | None = None
    access: tuple[AccessEntry, ...] = ()
    expires_at: datetime | None = None
    secret_hash: str
    prefix: str
    start: str
    rate_limit: int | None = None


class ChangeAccess(msgspec.Struct, frozen=True, kw_only=True):
    """Replace the key's access entries and/or rename it."""

    key_id: str
    access: tuple[AccessEntry, ...] | None = None
    name: str | None = None
    rate_limit: int | None = None  # 0 removes the override


class RotateKey(msgspec.Struct, frozen=True, kw_only=True):
    """Give the key a new secret; the old one keeps working for ``grace_seconds``."""

    key_id: str
    secret_hash: str
    start: str
    grace_seconds: int = 0


class RevokeKey(msgspec.Struct, frozen=True, kw_only=True):
    """Disable the key for good."""

    key_id: str
    reason: str = ""


Command = CreateKey | ChangeAccess | RotateKey | RevokeKey


def clean_name(name: str) -> str:
    """The trimmed key name; refuses empty, over-long or control-character names."""
    cleaned = name.strip()
    if not cleaned:
        raise ValidationError("name must not be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValidationError(f"name longer than {MAX_NAME_LENGTH} characters")
    _refuse_control_chars("name", cleaned)
    return cleaned


def clean_text(field: str, value: str | None) -> str | None:
    """Trim an optional free-text field (organization id, reason); None stays None."""
    if value is None:
        return None
    cleaned = value.strip()
    if len(cleaned) > MAX_TEXT_LENGTH:
        raise ValidationError(f"{field} longer than {MAX_TEXT_LENGTH} characters")
    _refuse_control_chars(field, cleaned)
    return cleaned


def _refuse_control_chars(field: str, value: str) -> None:
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValidationError(f"{field} must not contain control characters")


def check_create(command: CreateKey, now: datetime) -> CreateKey:
    """Validate a create command; returns it with cleaned name, organization and access."""
    organization = clean_text("organization_id", command.organization_id) or None
    if command.expires_at is not None:
        _require_aware("expires_at", command.expires_at)
        if command.expires_at <= now:
            raise ValidationError("expires_at must be in the future")
    if command.rate_limit is not None:
        _check_rate_limit(command.rate_limit, allow_zero=False)
    return msgspec.structs.replace(
        command,
        name=clean_name(command.name),
        organization_id=organization,
        access=validate_access(command.access),
    )


def check_change(command: ChangeAccess) -> ChangeAccess:
    """Validate a change-access command: something must change, and all of it be valid."""
    if command.access is None and command.name is None and command.rate_limit is None:
        raise ValidationError("nothing to change: give access entries, a name and/or a rate limit")
    if command.rate_limit is not None:
        _check_rate_limit(command.rate_limit, allow_zero=True)
    access = validate_access(command.access) if command.access is not None else None
    name = clean_name(command.name) if command.name is not None else None
    return msgspec.structs.replace(command, access=access, name=name)


def check_rotate(command: RotateKey) -> RotateKey:
    """Validate a rotate command: the grace period lies within 0..7 days."""
    if not 0 <= command.grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationError(f"grace period must be between 0 and {MAX_GRACE_SECONDS} seconds (7 days)")
    return command


def check_revoke(command: RevokeKey) -> RevokeKey:
    """Validate a revoke command (the reason is optional free text)."""
    return msgspec.structs.replace(command, reason=clean_text("reason", command.reason) or "")


def _check_rate_limit(value: int, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_RATE_LIMIT:
        raise ValidationError(f"rate_limit must be between {low} and {MAX_RATE_LIMIT} requests per minute")


def _require_aware(field: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{field} must carry a time zone")
