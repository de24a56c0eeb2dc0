"""Credits in the domain: the refill periods in UTC, the opening balance of each, validation, and
``key.credits_set`` from create and change (given events, when a command, then these events)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from keyledger.domain.commands import ChangeAccess, CreateKey
from keyledger.domain.credits import Credits, Refill, check_credits, next_boundary, opening_balance, period_start
from keyledger.domain.errors import ValidationError
from keyledger.domain.events import KeyAccessChanged, KeyCreated, KeyCreditsSet, decode_event, encode_event
from keyledger.domain.key import decide, evolve, fold

T0 = datetime(2030, 1, 31, 15, 30, tzinfo=UTC)
DAILY = Refill(amount=10, interval="daily")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("refill", "now", "start", "end"), [
    (DAILY, at("2030-01-31T15:30"), T0, at("2030-02-01T00:00")),            # the setting's own first period
    (DAILY, at("2030-02-01T00:00"), at("2030-02-01T00:00"), at("2030-02-02T00:00")),  # exactly at the boundary
    (DAILY, at("2030-02-03T23:59:59"), at("2030-02-03T00:00"), at("2030-02-04T00:00")),
    (Refill(amount=5, interval="monthly"), at("2030-02-10T00:00"), at("2030-02-01T00:00"), at("2030-03-01T00:00")),
    (Refill(amount=5, interval="monthly", day_of_month=31), at("2030-02-28T00:00"), at("2030-02-28T00:00"),
     at("2030-03-31T00:00")),  # the month's last day in a shorter month
    (Refill(amount=5, interval="monthly", day_of_month=15), at("2030-03-14T23:00"), at("2030-02-15T00:00"),
     at("2030-03-15T00:00")),
    (Refill(amount=5, interval="monthly", day_of_month=15), at("2031-01-02T00:00"), at("2030-12-15T00:00"),
     at("2031-01-15T00:00")),  # across a year
])
def test_periods_start_and_end_at_utc_boundaries(refill: Refill, now: datetime, start: datetime,
                                                 end: datetime) -> None:
    found = period_start(refill, T0, now)
    assert (found, next_boundary(refill, found)) == (start, end)


def test_a_period_opens_with_the_setting_then_the_refill_amount() -> None:
    credits = Credits(remaining=3, refill=DAILY)
    assert opening_balance(credits, T0, period_start(DAILY, T0, T0 + timedelta(hours=1))) == 3
    assert opening_balance(credits, T0, period_start(DAILY, T0, T0 + timedelta(days=1))) == 10
    assert period_start(None, T0, T0 + timedelta(days=400)) == T0  # no refill: one period for ever
    elsewhere = datetime(2030, 2, 1, 1, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))  # 03:00 there
    assert period_start(DAILY, T0, elsewhere) == at("2030-02-01T00:00")  # boundaries are UTC's


@pytest.mark.parametrize(("credits", "named"), [
    (Credits(remaining=-1), "credits.remaining"),
    (Credits(remaining=1, refill=Refill(amount=0, interval="daily")), "credits.refill.amount"),
    (Credits(remaining=1, refill=Refill(amount=1, interval="daily", day_of_month=2)), "day_of_month"),
    (Credits(remaining=1, refill=Refill(amount=1, interval="monthly", day_of_month=0)), "day_of_month"),
])
def test_bad_settings_are_refused_naming_the_field(credits: Credits, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        check_credits(credits)


def created(credits: Credits | None = None) -> list[object]:
    command = CreateKey(key_id="AAAAAAAAAAAA", name="k", secret_hash="h", prefix="kl", start="kl_AAAA",
                        credits=credits)
    return decide(None, command, T0)  # type: ignore[return-value]


def test_create_with_credits_records_key_credits_set_beside_key_created() -> None:
    credits = Credits(remaining=7, refill=DAILY)
    events = created(credits)
    assert [type(e) for e in events] == [KeyCreated, KeyCreditsSet]
    state = fold(events)  # type: ignore[arg-type]
    assert state is not None
    assert (state.credits, state.credits_set_at, state.credits_version) == (credits, T0, 2)
    assert [type(e) for e in created()] == [KeyCreated]
    assert decode_event(encode_event(events[1])) == events[1]  # type: ignore[arg-type]


def test_change_sets_or_removes_credits_and_leaves_them_alone_when_absent() -> None:
    state = fold(created())  # type: ignore[arg-type]
    assert state is not None and state.credits is None
    later = T0 + timedelta(hours=1)
    only = decide(state, ChangeAccess(key_id=state.key_id, credits=Credits(remaining=2)), later)
    assert only == [KeyCreditsSet(key_id=state.key_id, at=later, credits=Credits(remaining=2))]
    state = evolve(state, only[0])
    assert (state.credits, state.credits_version, state.credits_set_at) == (Credits(remaining=2), 2, later)
    both = decide(state, ChangeAccess(key_id=state.key_id, name="n", credits=None), later)
    assert [type(e) for e in both] == [KeyAccessChanged, KeyCreditsSet]
    state = fold(both, state)
    assert state is not None and (state.credits, state.credits_set_at, state.credits_version) == (None, None, 0)
    renamed = decide(state, ChangeAccess(key_id=state.key_id, name="m"), later)
    assert [type(e) for e in renamed] == [KeyAccessChanged]
    with pytest.raises(ValidationError, match="nothing to change"):
        decide(state, ChangeAccess(key_id=state.key_id), later)
    with pytest.raises(ValidationError, match="credits.remaining"):
        decide(state, ChangeAccess(key_id=state.key_id, credits=Credits(remaining=-5)), later)
    assert msgspec.UNSET is ChangeAccess(key_id="x").credits
