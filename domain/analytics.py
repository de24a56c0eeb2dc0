"""Usage analytics: which time series a query asks for (interval, grouping, range), checked, and the
series itself, bucket by bucket, from the counts read for it. Pure: the current time is passed in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from keyledger.domain.errors import ValidationError

INTERVALS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
GROUPS = ("outcome", "scope", "website")
# The longest range per interval: a year (a leap one) of hours, ten years of days.
MAX_RANGE: dict[str, timedelta] = {"hour": timedelta(days=366), "day": timedelta(days=3_660)}
DEFAULT_RANGE: dict[str, timedelta] = {"hour": timedelta(hours=24), "day": timedelta(days=30)}
NONE_NAMED = ""  # the group of the requests that named no scope or no website

Counts = Iterable[tuple[int, str, int]]  # (bucket start in seconds since the Unix epoch, group, count)


class SeriesRange(msgspec.Struct, frozen=True):
    """What a series covers: buckets of ``interval`` from ``start`` (inclusive) to ``end`` (exclusive),
    both on bucket boundaries (UTC hours or days), grouped by ``group_by``."""

    start: datetime
    end: datetime
    interval: str
    group_by: str

    @property
    def step(self) -> timedelta:
        """One bucket's length."""
        return INTERVALS[self.interval]

    def starts(self) -> list[datetime]:
        """Every bucket's start, oldest first."""
        step, count = self.step, (self.end - self.start) // self.step
        return [self.start + i * step for i in range(count)]


def bucket_of(at: datetime, interval: str) -> datetime:
    """The start of the UTC hour or day ``at`` falls in."""
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if interval == "day" else at


def parse_time(text: str | None, field: str) -> datetime | None:
    """An ISO 8601 / RFC 3339 time with a time zone (``2026-12-07T10:00:00Z``); None when not given."""
    if text is None or text == "":
        return None
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{field} must be an ISO 8601 time with a time zone, e.g. 2026-12-07T10:00:00Z, "
                              f"not {text[:40]!r}") from None
    if at.tzinfo is None:
        raise ValidationError(f"{field} must name its time zone, e.g. 2026-12-07T10:00:00Z")
    return at


def series_range(now: datetime, start: datetime | None, end: datetime | None, interval: str | None,
                 group_by: str | None) -> SeriesRange:
    """The range a query asks for: ``end`` (default: now) rounded up and ``start`` (default: a day of hours or
    30 days before the end) rounded down to the interval's boundaries. ValidationError naming the field when
    the interval or grouping is unknown, ``from`` is after ``to``, or the range is longer than the interval
    allows (366 days of hours, 3,660 days of days)."""
    interval, group_by = interval or "hour", group_by or "outcome"
    if interval not in INTERVALS:
        raise ValidationError(f"interval must be one of {', '.join(INTERVALS)}, not {interval[:40]!r}")
    if group_by not in GROUPS:
        raise ValidationError(f"group_by must be one of {', '.join(GROUPS)}, not {group_by[:40]!r}")
    if start is not None and end is not None and start > end:
        raise ValidationError("from must not be after to")
    step = INTERVALS[interval]
    last = end if end is not None else now
    stop = bucket_of(last, interval)
    if stop != last or end is None:  # a partial bucket counts whole
        stop += step
    first = bucket_of(start, interval) if start is not None else stop - DEFAULT_RANGE[interval]
    if stop - first > MAX_RANGE[interval]:
        raise ValidationError(f"from..to spans more than {MAX_RANGE[interval].days} days, the most an "
                              f"interval of one {interval} allows" + (" (use interval=day)" if interval == "hour"
                                                                      else ""))
    if first == stop:  # from == to on a boundary: that one bucket
        stop += step
    return SeriesRange(start=first, end=stop, interval=interval, group_by=group_by)


class UsageBucket(msgspec.Struct, frozen=True):
    """One bucket of a series: its start, the requests counted in it, and their count per group."""

    start: datetime
    total: int
    counts: dict[str, int]


class UsageSeries(msgspec.Struct, frozen=True):
    """A usage time series: every bucket of the range (empty ones too), and the totals per group."""

    interval: str
    group_by: str
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    groups: list[str]
    totals: dict[str, int]
    total: int
    buckets: list[UsageBucket]


def series_of(span: SeriesRange, counts: Counts) -> UsageSeries:
    """The series of ``span`` from the ``(bucket start, group, count)`` read for it, each start in seconds since
    the Unix epoch (integers: no datetime per row) on a bucket boundary; several of the same bucket and group
    add up, counts outside the range are left out."""
    starts = span.starts()
    first, step = int(span.start.timestamp()), int(span.step.total_seconds())
    cells: list[dict[str, int]] = [{} for _ in starts]
    totals: dict[str, int] = {}
    size = len(cells)
    for at, group, count in counts:
        i = (at - first) // step
        if 0 <= i < size:
            cell = cells[i]
            cell[group] = cell.get(group, 0) + count
            totals[group] = totals.get(group, 0) + count
    buckets = [UsageBucket(start=start, total=sum(cell.values()), counts=cell)
               for start, cell in zip(starts, cells, strict=True)]
    return UsageSeries(interval=span.interval, group_by=span.group_by, start=span.start, end=span.end,
                       groups=sorted(totals, key=lambda g: (-totals[g], g)), totals=totals,
                       total=sum(totals.values()), buckets=buckets)
