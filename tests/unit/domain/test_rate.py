"""Tiers, overrides and windows: pure rules, no clock."""

from datetime import UTC, datetime

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.commands import ChangeAccess
from keyledger.domain.errors import ValidationError
from keyledger.domain.key import decide, fold
from keyledger.domain.rate import DEFAULT_TIERS, limit_of, tier_of, window_start
from tests.support.factories import created

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def key_with(*scopes: str, rate_limit: int | None = None):  # type: ignore[no-untyped-def]
    state = fold([created("k")])
    assert state is not None
    access = (AccessEntry(resource="global", scopes=scopes or ("read:data",)),)
    (event,) = decide(state, ChangeAccess(key_id="k", access=access, rate_limit=rate_limit), NOW)
    return fold([event], state)


@pytest.mark.parametrize("scopes, tier, limit", [
    (("read:data",), "standard", 100),
    (("read:data", "rate:standard"), "standard", 100),
    (("rate:premium",), "premium", 1000),
    (("rate:premium", "rate:enterprise"), "enterprise", 10000),
])
def test_tier_selection(scopes: tuple[str, ...], tier: str, limit: int) -> None:
    state = key_with(*scopes)
    assert (tier_of(state), limit_of(state)) == (tier, limit)


def test_override_wins_and_zero_clears_it() -> None:
    state = key_with("rate:premium", rate_limit=7)
    assert limit_of(state) == 7 and tier_of(state) == "premium"
    (cleared,) = decide(state, ChangeAccess(key_id="k", rate_limit=0), NOW)
    assert limit_of(fold([cleared], state)) == 1000  # type: ignore[arg-type]
    assert limit_of(key_with("rate:premium"), {**DEFAULT_TIERS, "premium": 5}) == 5


@pytest.mark.parametrize("value", [-1, 10_000_001])
def test_override_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValidationError, match="rate_limit"):
        key_with(rate_limit=value)


def test_windows_are_aligned_minutes() -> None:
    assert window_start(1_700_000_039.9) == 1_700_000_040 - 60 == 1_699_999_980
    assert window_start(1_700_000_040.0) == 1_700_000_040
