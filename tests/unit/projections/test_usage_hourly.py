"""Usage counted per key, UTC hour and outcome."""

from datetime import UTC, datetime, timedelta, timezone

from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_hourly import count_hourly, hour_of

T = datetime(2030, 1, 1, 10, 59, 59, 999_999, tzinfo=UTC)


def event(at: datetime, outcome: str = "VALID", key_id: str | None = "k1") -> UsageEvent:
    return UsageEvent(id="x", at=at, action="verify", outcome=outcome, key_id=key_id)


def test_events_are_counted_per_key_utc_hour_and_outcome() -> None:
    events = [event(T), event(T - timedelta(minutes=59)), event(T + timedelta(microseconds=1)),
              event(T, "FORBIDDEN"), event(T, key_id="k2"), event(T, key_id=None)]
    ten, eleven = datetime(2030, 1, 1, 10, tzinfo=UTC), datetime(2030, 1, 1, 11, tzinfo=UTC)
    assert count_hourly(events) == {("k1", ten, "VALID"): 2, ("k1", eleven, "VALID"): 1,
                                    ("k1", ten, "FORBIDDEN"): 1, ("k2", ten, "VALID"): 1}


def test_an_hour_is_the_utc_hour_whatever_the_offset() -> None:
    assert hour_of(datetime(2030, 1, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))) == datetime(
        2030, 1, 1, 10, tzinfo=UTC)
