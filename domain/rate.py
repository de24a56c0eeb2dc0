"""Rate-limit tiers and fixed windows (pure: the caller passes the time)."""

from __future__ import annotations

from collections.abc import Mapping

from keyledger.domain.access import granted_scopes
from keyledger.domain.key import KeyState

WINDOW_SECONDS = 60
DEFAULT_TIERS: Mapping[str, int] = {"standard": 100, "premium": 1_000, "enterprise": 10_000}
_TIER_ORDER = ("enterprise", "premium", "standard")
_TIER_SCOPES = tuple((tier, f"rate:{tier}") for tier in _TIER_ORDER)


def tier_of(state: KeyState) -> str:
    """The key's tier: the highest ``rate:*`` scope it holds, ``standard`` when none."""
    scopes = granted_scopes(state.access)  # remembered per access tuple: a few names, no set to build
    return next((tier for tier, scope in _TIER_SCOPES if scope in scopes), "standard")


def limit_of(state: KeyState, tiers: Mapping[str, int] = DEFAULT_TIERS) -> int:
    """Requests per window for the key: its own override, else its tier's limit."""
    return state.rate_limit if state.rate_limit is not None else tiers[tier_of(state)]


def window_start(epoch_seconds: float, length: int = WINDOW_SECONDS) -> int:
    """The start (Unix seconds) of the fixed window that holds ``epoch_seconds``."""
    return int(epoch_seconds // length) * length
