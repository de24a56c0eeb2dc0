"""The usage-credit shapes of the HTTP API (keys' ``credits``), re-exported by ``services.http.schemas``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from keyledger.domain.credits import Credits, Refill


class CreditsRefill(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Reset the balance to ``amount`` at each ``interval`` boundary in UTC (``daily``: 00:00; ``monthly``:
    00:00 on ``day_of_month``, 1 by default, the month's last day in a shorter month)."""

    amount: int
    interval: Literal["daily", "monthly"]
    day_of_month: int | None = None


class CreditsSetting(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A key's usage credits: each VALID verify spends its ``cost`` (default 1); ``refill`` resets them."""

    remaining: int
    refill: CreditsRefill | None = None

    def domain(self) -> Credits:
        """The setting as the key's command carries it (validated there)."""
        refill = self.refill
        return Credits(remaining=self.remaining, refill=None if refill is None else Refill(
            amount=refill.amount, interval=refill.interval, day_of_month=refill.day_of_month))


class KeyCredits(CreditsSetting, kw_only=True):
    """A key's credits as shown: ``remaining`` is what no API replica holds of them right now (a replica's
    unspent lease returns within ``KEYLEDGER_CREDIT_LEASE_IDLE_SECONDS``), ``refilled_at`` the last refill."""

    refilled_at: datetime | None = None



class OwnerRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /v1/owners/{owner_id}``: a rate limit and/or credits shared by all the owner's keys, on top of
    each key's own (a field left out is kept; ``null`` removes it)."""

    rate_limit: int | None | msgspec.UnsetType = msgspec.UNSET
    credits: CreditsSetting | None | msgspec.UnsetType = msgspec.UNSET


class Owner(msgspec.Struct, kw_only=True):
    """An owner in your system, its shared limits (null: none) and its keys' ids."""

    owner_id: str
    organization_id: str | None
    rate_limit: int | None
    credits: KeyCredits | None
    keys: list[str]
    version: int  # changes recorded so far (0: never set)
    updated_at: datetime | None
