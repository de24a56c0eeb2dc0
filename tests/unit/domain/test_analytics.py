"""A usage series' range (rounded to its interval, limited, defaulted) and its buckets."""

from datetime import UTC, datetime, timedelta

import pytest

from keyledger.domain.analytics import parse_time, series_of, series_range
from keyledger.domain.errors import ValidationError

NOW = datetime(2030, 1, 10, 10, 30, tzinfo=UTC)


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2030, 1, day, hour, tzinfo=UTC)


def test_the_range_is_rounded_out_to_the_interval() -> None:
    span = series_range(NOW, at(1, 5) + timedelta(minutes=10), at(2, 7) + timedelta(seconds=1), "day", "scope")
    assert (span.start, span.end, span.interval, span.group_by) == (at(1), at(3), "day", "scope")
    exact = series_range(NOW, at(1, 5), at(1, 7), "hour", None)
    assert (exact.start, exact.end, exact.group_by) == (at(1, 5), at(1, 7), "outcome")  # ``to`` is exclusive
    assert len(exact.starts()) == 2
    assert series_range(NOW, at(1, 5), at(1, 5), "hour", None).starts() == [at(1, 5)]


def test_the_defaults_end_with_the_current_bucket() -> None:
    hourly = series_range(NOW, None, None, None, None)
    assert (hourly.start, hourly.end, hourly.interval) == (at(9, 11), at(10, 11), "hour")
    daily = series_range(NOW, None, None, "day", None)
    assert (daily.end - daily.start, daily.end) == (timedelta(days=30), at(11))


@pytest.mark.parametrize(("start", "end", "interval", "group_by", "message"), [
    (at(2), at(1), "hour", None, "from must not be after to"),
    (None, None, "week", None, "interval must be one of hour, day"),
    (None, None, None, "ip", "group_by must be one of outcome, scope, website"),
    (at(1) - timedelta(days=367), at(1), "hour", None, "more than 366 days"),
    (at(1) - timedelta(days=3_661), at(1), "day", None, "more than 3660 days"),
])
def test_a_bad_query_names_what_is_wrong(start: datetime | None, end: datetime | None, interval: str | None,
                                         group_by: str | None, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        series_range(NOW, start, end, interval, group_by)


def test_the_longest_ranges_are_allowed() -> None:
    assert len(series_range(NOW, at(1) - timedelta(days=366), at(1), "hour", None).starts()) == 366 * 24
    assert len(series_range(NOW, at(1) - timedelta(days=3_660), at(1), "day", None).starts()) == 3_660


def test_times_need_a_zone() -> None:
    assert parse_time("2030-01-01T02:00:00+02:00", "from") == at(1)
    assert parse_time("2030-01-01T00:00:00Z", "from") == at(1)
    assert parse_time(None, "from") is None
    with pytest.raises(ValidationError, match="to must name its time zone"):
        parse_time("2030-01-01T00:00:00", "to")
    with pytest.raises(ValidationError, match="from must be an ISO 8601 time"):
        parse_time("last tuesday", "from")


def test_every_bucket_is_in_the_series_and_counts_add_up() -> None:
    span = series_range(NOW, at(1, 0), at(1, 3), "hour", "outcome")
    zero, one, three = (int(at(1, hour).timestamp()) for hour in (0, 1, 3))
    series = series_of(span, [(zero, "VALID", 2), (one, "VALID", 1), (one, "FORBIDDEN", 5), (zero, "VALID", 1),
                              (three, "VALID", 100), (zero - 3_600, "VALID", 100)])  # the last two are outside
    assert [(b.start, b.total, b.counts) for b in series.buckets] == [
        (at(1, 0), 3, {"VALID": 3}), (at(1, 1), 6, {"VALID": 1, "FORBIDDEN": 5}), (at(1, 2), 0, {})]
    assert (series.totals, series.total, series.groups) == ({"VALID": 4, "FORBIDDEN": 5}, 9, ["FORBIDDEN", "VALID"])
