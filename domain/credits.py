"""Usage credits: how many ``VALID`` verifies a key (or an owner) has left, and how they refill (pure).

A setting ``{remaining, refill?: {amount, interval, day_of_month?}}`` is recorded by ``key.credits_set``;
from then on the balance is counted outside the event log (spending is not an event). A refill *resets* the
balance to ``amount`` at every interval boundary in UTC after the setting: ``daily`` at 00:00, ``monthly`` at
00:00 on ``day_of_month`` (1 by default; the month's last day in a shorter month). The balance of a period is
therefore known from the setting and the clock alone: :func:`period_start` names the period, and
:func:`opening_balance` what it starts with.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from keyledger.domain.errors import ValidationError

MAX_CREDITS = 1_000_000_000_000
MAX_COST = 1_000_000
Interval = Literal["daily", "monthly"]
INTERVALS: tuple[str, ...] = ("daily", "monthly")


class Refill(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Reset the balance to ``amount`` at each ``interval`` boundary (UTC)."""

    amount: int
    interval: Interval
    day_of_month: int | None = None


class Credits(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A credits setting: the balance it starts with and its refill rule (None: never refilled)."""

    remaining: int
    refill: Refill | None = None


def check_credits(credits: Credits) -> Credits:
    """The setting if valid, else ValidationError naming the field."""
    if not 0 <= credits.remaining <= MAX_CREDITS:
        raise ValidationError(f"credits.remaining must be between 0 and {MAX_CREDITS}")
    refill = credits.refill
    if refill is not None:
        if not 1 <= refill.amount <= MAX_CREDITS:
            raise ValidationError(f"credits.refill.amount must be between 1 and {MAX_CREDITS}")
        if refill.interval not in INTERVALS:
            raise ValidationError("credits.refill.interval must be daily or monthly")
        if refill.day_of_month is not None:
            if refill.interval != "monthly":
                raise ValidationError("credits.refill.day_of_month applies only to a monthly refill")
            if not 1 <= refill.day_of_month <= 31:
                raise ValidationError("credits.refill.day_of_month must be between 1 and 31")
    return credits


MAX_OWNER_ID_LENGTH = 200
OWNER_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@+=")


def check_owner_id(owner_id: str) -> str:
    """An owner id as the customer's system names it: 1 to 200 of ``A-Z a-z 0-9 - _ . : @ + =``."""
    if not 1 <= len(owner_id) <= MAX_OWNER_ID_LENGTH:
        raise ValidationError(f"owner_id must be 1 to {MAX_OWNER_ID_LENGTH} characters")
    if not set(owner_id) <= OWNER_ID_CHARACTERS:
        raise ValidationError("owner_id may use only A-Z, a-z, 0-9 and - _ . : @ + =")
    return owner_id


def check_cost(cost: int) -> int:
    """A verify's ``cost``: 0 (check without spending) to :data:`MAX_COST`."""
    if not 0 <= cost <= MAX_COST:
        raise ValidationError(f"cost must be between 0 and {MAX_COST}")
    return cost


def _monthly_boundary(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, min(day, calendar.monthrange(year, month)[1]), tzinfo=UTC)


def period_start(refill: Refill | None, set_at: datetime, now: datetime) -> datetime:
    """The start of the period ``now`` falls in: the setting's own time until the first boundary after it,
    then the latest boundary at or before ``now``."""
    if refill is None or now <= set_at:
        return set_at
    now = now.astimezone(UTC)
    if refill.interval == "daily":
        boundary = datetime(now.year, now.month, now.day, tzinfo=UTC)
    else:
        day = refill.day_of_month or 1
        boundary = _monthly_boundary(now.year, now.month, day)
        if boundary > now:
            year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
            boundary = _monthly_boundary(year, month, day)
    return boundary if boundary > set_at else set_at


def next_boundary(refill: Refill | None, after: datetime) -> datetime | None:
    """The first refill boundary strictly after ``after`` (None without a refill)."""
    if refill is None:
        return None
    after = after.astimezone(UTC)
    if refill.interval == "daily":
        return datetime(after.year, after.month, after.day, tzinfo=UTC) + timedelta(days=1)
    day = refill.day_of_month or 1
    boundary = _monthly_boundary(after.year, after.month, day)
    if boundary <= after:
        year, month = (after.year, after.month + 1) if after.month < 12 else (after.year + 1, 1)
        boundary = _monthly_boundary(year, month, day)
    return boundary


def opening_balance(credits: Credits, set_at: datetime, period: datetime) -> int:
    """What the period starting at ``period`` starts with: the setting's ``remaining`` in its own period,
    the refill ``amount`` in every later one."""
    if period <= set_at or credits.refill is None:
        return credits.remaining
    return credits.refill.amount
