"""Request and response bodies of the HTTP API (DESIGN.md "HTTP API shape": field names are the contract).

Requests only describe shape (types, unknown fields refused); the values are validated in one
place, the domain (``keyledger.domain.commands`` and ``access``). Responses encode every field,
optional ones as ``null``, except an access entry's ``id``, which is left out when it has none.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from keyledger.domain.credits import MAX_COST
from keyledger.domain.key import Status
from keyledger.services.http.credit_schemas import CreditsSetting as CreditsSetting
from keyledger.services.http.credit_schemas import KeyCredits as KeyCredits
from keyledger.services.http.credit_schemas import Owner as Owner
from keyledger.services.http.credit_schemas import OwnerRequest as OwnerRequest
from keyledger.services.keys.bulk import BulkFilter as BulkFilter
from keyledger.services.keys.bulk import BulkOutcome as BulkOutcome
from keyledger.services.verify.answer import Access as Access  # the verify answer's structs, shared with every
from keyledger.services.verify.answer import CreditsState as CreditsState  # verify transport: re-exported
from keyledger.services.verify.answer import OwnerState as OwnerState  # verify transport: re-exported
from keyledger.services.verify.answer import RateLimitState as RateLimitState  # verify transport: re-exported
from keyledger.services.verify.answer import VerifyAnswer as VerifyAnswer
from keyledger.services.verify.call import DATA_LENGTH, MAX_PRESENTED_LENGTH, SCOPE_LENGTH, WEBSITE_ID_LENGTH

# an allowlist of CIDRs (validated and normalised by the domain)
Networks = Annotated[list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=200)]


class CreateKeyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/keys``: top-level ``scopes`` are global grants, ``access`` the resource-scoped ones."""

    name: str
    organization_id: str | None = None
    scopes: list[str] = []
    access: list[Access] = []
    expires_at: datetime | None = None
    rate_limit: int | None = None
    description: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    tags: Annotated[list[Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=100)] = []
    allowed_networks: Networks = []  # CIDRs; none: usable from anywhere
    credits: CreditsSetting | None = None  # usage credits (none: unlimited)
    owner_id: str | None = None  # its owner in your system (shares the owner's limits: PUT /v1/owners/{id})


class ChangeKeyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PATCH /v1/keys/{id}``: ``scopes`` and ``access`` replace the key's grants together;
    ``rate_limit`` 0 returns the key to its tier's limit; ``description`` and ``tags`` replace the key's."""

    name: str | None = None
    scopes: list[str] | None = None
    access: list[Access] | None = None
    rate_limit: int | None = None
    description: Annotated[str, msgspec.Meta(max_length=4000)] | None = None
    tags: Annotated[list[Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=100)] | None = None
    allowed_networks: Networks | None = None  # []: from anywhere again
    credits: CreditsSetting | None | msgspec.UnsetType = msgspec.UNSET  # null: no credits any more
    owner_id: str | None = None  # "": no owner any more


class RotateKeyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/keys/{id}/rotate``: how long the old secret keeps working (0..7 days)."""

    grace_seconds: int = 0


class RevokeKeyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/keys/{id}/revoke``."""

    reason: str = ""


class VerifyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/verify``: may ``key`` do ``scope`` on this website / data kind? ``ip`` and
    ``user_agent`` are the end client's, for the audit trail (which keeps 100 and 300 characters of
    them). The values are checked as every verify transport's are (``services.verify.call``); the
    lengths here are the same ones, for ``/schema``."""

    key: Annotated[str, msgspec.Meta(max_length=MAX_PRESENTED_LENGTH)]
    scope: Annotated[str, msgspec.Meta(max_length=SCOPE_LENGTH)]
    website_id: Annotated[str, msgspec.Meta(max_length=WEBSITE_ID_LENGTH)] | None = None
    data: Annotated[str, msgspec.Meta(max_length=DATA_LENGTH)] | None = None
    ip: str | None = None
    user_agent: str | None = None
    cost: Annotated[int, msgspec.Meta(ge=0, le=MAX_COST)] = 1  # usage credits a VALID answer spends (0: none)


class Key(msgspec.Struct, kw_only=True):
    """A key as the API shows it: never its secret or the secret's hash."""

    id: str
    prefix: str
    start: str
    name: str
    description: str
    tags: list[str]
    organization_id: str | None
    scopes: list[str]
    access: list[Access]
    expires_at: datetime | None
    status: Status
    version: int
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    previous_secret_valid_until: datetime | None
    rate_limit: int | None
    rate_tier: str
    allowed_networks: list[str]  # CIDRs the key may be used from (empty: anywhere)
    credits: KeyCredits | None = None  # usage credits (null: unlimited)
    owner_id: str | None = None  # its owner in your system (null: none)


class KeyWithSecret(Key, kw_only=True):
    """A key just created or rotated, with its full secret token: shown this once."""

    secret: str


class KeyWithLastUse(Key, kw_only=True):
    """A key with the time it was last used successfully (null: never)."""

    last_used_at: datetime | None


class KeyPage(msgspec.Struct, kw_only=True):
    """Keys ordered by id; ``next_cursor`` (null on the last page) continues."""

    items: list[KeyWithLastUse]
    next_cursor: str | None


class AuditRecord(msgspec.Struct, kw_only=True):
    """One audit record: a usage (a verification or API call) or a lifecycle event of a key."""

    kind: Literal["usage", "lifecycle"]
    at: datetime
    id: str
    key_id: str | None
    start: str | None
    organization_id: str | None
    action: str
    outcome: str
    actor: str | None
    scope: str | None
    granted_by: str | None
    reason: str | None
    website_id: str | None
    data: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    detail: dict[str, Any] | None


class AuditPage(msgspec.Struct, kw_only=True):
    """Audit records, newest first; ``next_cursor`` (null on the last page) continues."""

    items: list[AuditRecord]
    next_cursor: str | None


class Health(msgspec.Struct, kw_only=True):
    """The process is up."""

    status: Literal["ok"] = "ok"


class Ready(msgspec.Struct, kw_only=True):
    """Ready: the key cache has caught up with the store as it was at start. ``lag`` is null while the
    store is unreachable; ``degraded`` names what is missing while the process still serves."""

    ready: bool
    position: int
    lag: int | None
    keys: int
    forged: int = 0  # messages on the bus that claimed events the store does not hold (ignored)
    degraded: list[str] = msgspec.field(default_factory=list)
    replicas: int = 0  # the other API replicas this one hears: a key command waits until each holds it


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every failure: ``code`` is AUTH_REQUIRED, FORBIDDEN, RATE_LIMITED, VALIDATION_ERROR, NOT_FOUND,
    CONFLICT, NOT_READY, METHOD_NOT_ALLOWED or INTERNAL_ERROR; ``error`` says it for people."""

    success: bool = False
    error: str
    code: str


class AuditPublicKey(msgspec.Struct, kw_only=True):
    """The Ed25519 public key that checks audit export manifests (``keyledger audit verify --public-key``).
    ``key_id`` is what a signed manifest names; ``public_key`` is the raw 32-byte key in base64."""

    key_id: str
    algorithm: Literal["Ed25519"] = "Ed25519"
    public_key: str


class BulkRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/keys/bulk``: ``action`` on the keys ``ids`` names or ``filter`` selects (exactly one of the
    two; at most 10,000 keys). ``tags``: what ``add_tags``/``remove_tags`` add or take away; ``reason``: the
    revoke reason; ``dry_run``: report what would happen and change nothing."""

    action: Literal["revoke", "add_tags", "remove_tags"]
    ids: list[Annotated[str, msgspec.Meta(max_length=100)]] | None = None
    filter: BulkFilter | None = None
    tags: Annotated[list[Annotated[str, msgspec.Meta(max_length=200)]], msgspec.Meta(max_length=100)] = []
    reason: Annotated[str, msgspec.Meta(max_length=4000)] = ""
    dry_run: bool = False


class BulkResponse(msgspec.Struct, kw_only=True):
    """Every named or selected key's outcome, in order (``ids``' order, else by id): ``succeeded`` counts
    ``OK`` and ``UNCHANGED``, ``failed`` the refused ones, which were left as they were."""

    action: Literal["revoke", "add_tags", "remove_tags"]
    dry_run: bool
    matched: int
    succeeded: int
    failed: int
    results: list[BulkOutcome]
