"""Usage per key, hour and outcome: the read model behind the dashboard's charts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from keyledger.domain.usage import UsageEvent

HourlyCounts = Counter[tuple[str, datetime, str]]


def hour_of(at: datetime) -> datetime:
    """The UTC hour ``at`` falls in."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def count_hourly(events: Iterable[UsageEvent], into: HourlyCounts | None = None) -> HourlyCounts:
    """``(key_id, hour, outcome) -> count`` of the events that name a key (others have no chart)."""
    counts: HourlyCounts = into if into is not None else Counter()
    for event in events:
        if event.key_id is not None:
            counts[(event.key_id, hour_of(event.at), event.outcome)] += 1
    return counts
