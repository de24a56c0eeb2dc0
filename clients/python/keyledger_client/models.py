"""What keyledger answers, as typed structs (unknown fields are ignored, so newer servers still decode)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

VerifyCode = Literal["VALID", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "FORBIDDEN", "RATE_LIMITED",
                     "UNAVAILABLE", "USAGE_EXCEEDED"]


class Access(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One resource grant: ``scopes`` on ``resource`` (``id`` names the website of a ``website`` grant)."""

    resource: str
    scopes: list[str]
    id: str | None = None


class RateLimit(msgspec.Struct, kw_only=True):
    """The verified key's budget: requests per window, what is left, window end (Unix seconds)."""

    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """As ``X-RateLimit-*`` response headers."""
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset)}


class Refill(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Reset a key's credits to ``amount`` at each ``interval`` boundary in UTC (``monthly``: on
    ``day_of_month``, 1 by default)."""

    amount: int
    interval: Literal["daily", "monthly"]
    day_of_month: int | None = None


class Credits(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A key's usage credits: each VALID verify spends its ``cost``. Pass one to ``create``/``update``;
    a key shows ``remaining`` (what no server holds of them now) and ``refilled_at`` (the last refill)."""

    remaining: int
    refill: Refill | None = None
    refilled_at: datetime | None = None


class CreditsLeft(msgspec.Struct, kw_only=True):
    """The verified key's credits after this verify (keys with credits only)."""

    remaining: int


class OwnerLeft(msgspec.Struct, kw_only=True):
    """The verified key's owner and what is left of its shared limits (each None when it has none)."""

    owner_id: str
    ratelimit: RateLimit | None = None
    credits: CreditsLeft | None = None


class Owner(msgspec.Struct, kw_only=True):
    """An owner in your system: the rate limit and credits its keys share (None: none) and its keys' ids."""

    owner_id: str
    organization_id: str | None = None
    rate_limit: int | None = None
    credits: Credits | None = None
    keys: list[str] = []
    version: int = 0
    updated_at: datetime | None = None


class VerifyResult(msgspec.Struct, kw_only=True):
    """The answer of ``POST /v1/verify``: ``valid`` and the machine-readable ``code`` say it all; ``reason``
    says why for people. ``ratelimit`` is None when no key was identified."""

    valid: bool
    code: VerifyCode
    reason: str = ""
    key_id: str | None = None
    organization_id: str | None = None
    scopes: list[str] = []
    granted_by: Access | None = None
    expires_at: datetime | None = None
    ratelimit: RateLimit | None = None
    credits: CreditsLeft | None = None  # for a key with credits; code USAGE_EXCEEDED when too few were left
    owner: OwnerLeft | None = None  # for a key whose owner has shared limits


class Key(msgspec.Struct, kw_only=True):
    """A key as the API shows it (never its secret). ``version`` goes into ``update(..., version=)``."""

    id: str
    prefix: str
    start: str
    name: str
    description: str = ""
    tags: list[str] = []
    organization_id: str | None
    scopes: list[str]
    access: list[Access]
    expires_at: datetime | None
    status: Literal["active", "revoked", "expired"]
    version: int
    created_at: datetime
    updated_at: datetime | None = None
    revoked_at: datetime | None = None
    revoke_reason: str | None = None
    previous_secret_valid_until: datetime | None = None
    rate_limit: int | None = None
    rate_tier: str | None = None
    allowed_networks: list[str] = []  # CIDRs the key may be used from (empty: anywhere)
    credits: Credits | None = None  # usage credits (None: unlimited)
    owner_id: str | None = None  # its owner in your system (shares the owner's limits)
    last_used_at: datetime | None = None  # in ``get`` and ``list`` answers


class KeyWithSecret(Key, kw_only=True):
    """A key just created or rotated, with its full secret: store it now, it is never shown again."""

    secret: str


class KeyPage(msgspec.Struct, kw_only=True):
    """One page of ``GET /v1/keys``."""

    items: list[Key]
    next_cursor: str | None


class AuditRecord(msgspec.Struct, kw_only=True):
    """One audit record: a usage (a verification or API call) or a lifecycle event of a key."""

    kind: Literal["usage", "lifecycle"]
    at: datetime
    id: str
    action: str
    outcome: str
    key_id: str | None = None
    start: str | None = None
    organization_id: str | None = None
    actor: str | None = None
    scope: str | None = None
    granted_by: str | None = None
    reason: str | None = None
    website_id: str | None = None
    data: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] | None = None


class AuditPage(msgspec.Struct, kw_only=True):
    """One page of ``GET /v1/audit``."""

    items: list[AuditRecord]
    next_cursor: str | None


class UsageBucket(msgspec.Struct, kw_only=True):
    """One bucket of a usage series: when it starts, the requests in it and their count per group."""

    start: datetime
    total: int
    counts: dict[str, int]


class UsageSeries(msgspec.Struct, kw_only=True):
    """``GET /v1/analytics/usage``: every bucket from ``start`` (``from``) to ``end`` (``to``, exclusive), empty
    ones too, and the totals per group (``groups`` from the most requests to the fewest; ``""`` is the group of
    requests that named no scope or website)."""

    interval: Literal["hour", "day"]
    group_by: Literal["outcome", "scope", "website"]
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    groups: list[str]
    totals: dict[str, int]
    total: int
    buckets: list[UsageBucket]


class ErrorBody(msgspec.Struct, kw_only=True):
    """keyledger's structured error: ``{"success": false, "error": ..., "code": ...}``."""

    error: str
    code: str
    success: bool = False


class ImportLineResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What became of one line of an import: ``imported`` (as ``key_id``), ``unchanged`` (imported before) or
    ``error`` (``code`` and ``error`` say why; nothing of that line was imported)."""

    line: int
    status: Literal["imported", "unchanged", "error"]
    source_id: str | None = None
    key_id: str | None = None
    code: str | None = None
    error: str | None = None


class ImportReport(msgspec.Struct, kw_only=True):
    """The answer of ``POST /v1/keys/import``: counts, then one result per non-blank line, in order."""

    format: str
    imported: int
    unchanged: int
    failed: int
    results: list[ImportLineResult]


class BulkFilter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Which keys a bulk action selects: every key matching all the conditions given (at least one); never a
    revoked key, nor the calling key."""

    organization_id: str | None = None
    tag: str | None = None
    owner_id: str | None = None
    created_before: datetime | None = None


class BulkOutcome(msgspec.Struct, kw_only=True):
    """One key's result in a bulk action: ``code`` is ``OK``, ``UNCHANGED`` (nothing to do) or the error code
    that refused it (the key was left as it was; ``error`` says why)."""

    id: str
    ok: bool
    code: str
    error: str | None = None


class BulkResult(msgspec.Struct, kw_only=True):
    """The answer of ``POST /v1/keys/bulk``: ``failed`` > 0 means those keys were refused and left as they were,
    the others changed (``dry_run``: would be)."""

    action: Literal["revoke", "add_tags", "remove_tags"]
    dry_run: bool
    matched: int
    succeeded: int
    failed: int
    results: list[BulkOutcome]
