"""Commands on a key and their input validation (pure; raise ValidationError)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from keyledger.domain.access import AccessEntry, validate_access
from keyledger.domain.credits import Credits, check_credits, check_owner_id
from keyledger.domain.errors import ValidationError
from keyledger.domain.events import LEAK_SOURCES
from keyledger.domain.networks import clean_networks
from keyledger.domain.redaction import redact

MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 500
MAX_GRACE_SECONDS = 7 * 24 * 3600
MAX_RATE_LIMIT = 10_000_000
MAX_DESCRIPTION_LENGTH = 1000
MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_LEAK_URL_LENGTH = 400  # where a leak was found, as its reporter says (the revoke reason quotes it)
MAX_REPORTER_LENGTH = 200
TAG_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.:/=")


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
    description: str = ""
    tags: tuple[str, ...] = ()
    allowed_networks: tuple[str, ...] = ()
    credits: Credits | None = None  # usage credits (recorded as key.credits_set beside key.created)
    owner_id: str | None = None  # its owner in the customer's system


class ChangeAccess(msgspec.Struct, frozen=True, kw_only=True):
    """Replace the key's access entries and/or rename it."""

    key_id: str
    access: tuple[AccessEntry, ...] | None = None
    name: str | None = None
    rate_limit: int | None = None  # 0 removes the override
    description: str | None = None
    tags: tuple[str, ...] | None = None
    allowed_networks: tuple[str, ...] | None = None  # (): from anywhere again
    credits: Credits | None | msgspec.UnsetType = msgspec.UNSET  # UNSET: unchanged; None: removed (key.credits_set)
    owner_id: str | None = None  # None: unchanged; "": no owner


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


class ReportLeak(msgspec.Struct, frozen=True, kw_only=True):
    """Record that one of the key's secrets leaked: ``previous_secret`` when it was the old one a rotation
    keeps working (its grace period ends; nothing else changes), else the current one, which ``revoke``
    revokes at once (policy ``revoke``) or leaves working (policy ``notify``)."""

    key_id: str
    source: str
    url: str = ""
    reporter: str = ""
    previous_secret: bool = False
    revoke: bool = True


Command = CreateKey | ChangeAccess | RotateKey | RevokeKey | ReportLeak


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


def clean_description(value: str) -> str:
    """The trimmed description: at most 1000 characters; line breaks and tabs are kept, other control
    characters refused."""
    cleaned = value.strip()
    if len(cleaned) > MAX_DESCRIPTION_LENGTH:
        raise ValidationError(f"description longer than {MAX_DESCRIPTION_LENGTH} characters")
    _refuse_control_chars("description", cleaned.replace("\n", " ").replace("\t", " ").replace("\r", " "))
    return cleaned


def clean_tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """Tags lower-cased and trimmed, duplicates dropped (first kept): at most 20, each 1-50 of
    ``a-z 0-9 - _ . : / =``."""
    cleaned = tuple(dict.fromkeys(tag.strip().lower() for tag in tags))
    if len(cleaned) > MAX_TAGS:
        raise ValidationError(f"too many tags: {len(cleaned)} (at most {MAX_TAGS})")
    for tag in cleaned:
        if not tag or len(tag) > MAX_TAG_LENGTH:
            raise ValidationError(f"a tag is 1 to {MAX_TAG_LENGTH} characters")
        if not set(tag) <= TAG_CHARACTERS:
            raise ValidationError(f"tag {tag[:MAX_TAG_LENGTH]!r} may use only a-z, 0-9 and - _ . : / =")
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
    if command.credits is not None:
        check_credits(command.credits)
    if command.owner_id is not None:
        check_owner_id(command.owner_id)
    return msgspec.structs.replace(
        command,
        name=clean_name(command.name),
        organization_id=organization,
        access=validate_access(command.access),
        description=clean_description(command.description),
        tags=clean_tags(command.tags),
        allowed_networks=clean_networks(command.allowed_networks),
    )


def check_change(command: ChangeAccess) -> ChangeAccess:
    """Validate a change-access command: something must change, and all of it be valid."""
    if (command.access is None and command.name is None and command.rate_limit is None
            and command.description is None and command.tags is None and command.allowed_networks is None
            and command.credits is msgspec.UNSET and command.owner_id is None):
        raise ValidationError("nothing to change: give access entries, a name, a rate limit, a description, "
                              "tags, allowed_networks, credits and/or owner_id")
    if command.rate_limit is not None:
        _check_rate_limit(command.rate_limit, allow_zero=True)
    if isinstance(command.credits, Credits):
        check_credits(command.credits)
    if command.owner_id:
        check_owner_id(command.owner_id)
    access = validate_access(command.access) if command.access is not None else None
    name = clean_name(command.name) if command.name is not None else None
    description = clean_description(command.description) if command.description is not None else None
    tags = clean_tags(command.tags) if command.tags is not None else None
    networks = clean_networks(command.allowed_networks) if command.allowed_networks is not None else None
    return msgspec.structs.replace(command, access=access, name=name, description=description, tags=tags,
                                   allowed_networks=networks)


def check_rotate(command: RotateKey) -> RotateKey:
    """Validate a rotate command: the grace period lies within 0..7 days."""
    if not 0 <= command.grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationError(f"grace period must be between 0 and {MAX_GRACE_SECONDS} seconds (7 days)")
    return command


def check_revoke(command: RevokeKey) -> RevokeKey:
    """Validate a revoke command (the reason is optional free text)."""
    return msgspec.structs.replace(command, reason=clean_text("reason", command.reason) or "")


def check_report(command: ReportLeak) -> ReportLeak:
    """Validate a leak report: a known source; ``url`` and ``reporter`` are free text from outside, trimmed,
    without control characters, and any token in them cut to its start (the event never holds a secret)."""
    if command.source not in LEAK_SOURCES:
        raise ValidationError(f"source must be one of {', '.join(LEAK_SOURCES)}")
    url, reporter = redact(command.url.strip()), redact(command.reporter.strip())
    if len(url) > MAX_LEAK_URL_LENGTH:
        raise ValidationError(f"url longer than {MAX_LEAK_URL_LENGTH} characters")
    if len(reporter) > MAX_REPORTER_LENGTH:
        raise ValidationError(f"reporter longer than {MAX_REPORTER_LENGTH} characters")
    _refuse_control_chars("url", url)
    _refuse_control_chars("reporter", reporter)
    return msgspec.structs.replace(command, url=url, reporter=reporter)


def leak_reason(source: str, url: str) -> str:
    """The revoke reason of a leaked key: ``leaked: reported by <source> at <url>``."""
    return f"leaked: reported by {source}" + (f" at {url}" if url else "")


def _check_rate_limit(value: int, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not low <= value <= MAX_RATE_LIMIT:
        raise ValidationError(f"rate_limit must be between {low} and {MAX_RATE_LIMIT} requests per minute")


def _require_aware(field: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(f"{field} must carry a time zone")
    try:
        value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC: no reader could show it
        raise ValidationError(f"{field} is out of range (it must fall within the years 1 to 9999 in UTC)") from None
