"""Owners in the customer's system: a key names one (``owner_id``), and an owner may carry a rate limit and
usage credits shared by all its keys, on top of each key's own (pure)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.domain.credits import Credits
from keyledger.domain.errors import ValidationError


class OwnerLimits(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An owner's shared limits within its organization (``""``: keys of no organization)."""

    organization_id: str
    owner_id: str
    rate_limit: int | None = None  # requests per minute over all its keys (None: none)
    credits: Credits | None = None
    credits_version: int = 0  # the owner's version when its credits were set: which balance is current
    credits_set_at: datetime | None = None
    version: int = 0
    updated_at: datetime | None = None

    @property
    def pool_id(self) -> str:
        """Where its credits and rate window are counted: ``owner:<owner id>/<organization>`` (an owner id
        holds no ``/``)."""
        return f"owner:{self.owner_id}/{self.organization_id}"


MAX_OWNER_RATE_LIMIT = 10_000_000


def check_owner_rate_limit(rate_limit: int | None) -> int | None:
    """An owner's rate limit: 1 to 10,000,000 requests per minute, or None (no shared limit)."""
    if rate_limit is not None and not 1 <= rate_limit <= MAX_OWNER_RATE_LIMIT:
        raise ValidationError(f"rate_limit must be between 1 and {MAX_OWNER_RATE_LIMIT} requests per minute")
    return rate_limit
