"""Keys' ``credits`` with their live balance, for the management API's key views."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from keyledger.domain.credits import Credits
from keyledger.domain.key import KeyState
from keyledger.services.keys.views import credits_view
from keyledger.services.verify.credits import CreditLedger, balances


def key_pool(key_id: str) -> str:
    """The credit pool of a key."""
    return f"key:{key_id}"


async def live_credits(ledger: CreditLedger | None, states: Iterable[KeyState], now: datetime) -> dict[str, Any]:
    """key id → its ``credits`` view with the balance read from the pools (one query for all of them), plus
    what this process's ``ledger`` leased of each and did not spend (None: the settings as they were set)."""
    settings: dict[str, tuple[int, Credits, datetime]] = {
        key_pool(s.key_id): (s.credits_version, s.credits, s.credits_set_at or s.created_at)
        for s in states if s.credits is not None}
    found = await balances(ledger.pools, settings, now, ledger) if ledger is not None and settings else {}
    shown: dict[str, Any] = {}
    for pool_id, (_, credits, _) in settings.items():
        balance = found.get(pool_id)
        shown[pool_id.removeprefix("key:")] = credits_view(
            credits, balance.remaining if balance else None, balance.refilled_at if balance else None)
    return shown
