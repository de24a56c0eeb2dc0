"""Usage charts as inline SVG, drawn on the server from per-key hourly counts (no script, no images)."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape

from markupsafe import Markup

from keyledger.projections.usage_hourly import hour_of

Hourly = list[tuple[datetime, str, int]]
# outcome → colour class (stylesheet); anything else is "other"
OUTCOME_CLASSES = {"VALID": "ok", "FORBIDDEN": "forbidden", "RATE_LIMITED": "limited"}


def hours_ending(now: datetime, count: int) -> list[datetime]:
    """The ``count`` UTC hours up to and including the current one, oldest first."""
    last = hour_of(now)
    return [last - timedelta(hours=count - 1 - i) for i in range(count)]


def per_hour(rows: Hourly, hours: list[datetime]) -> list[dict[str, int]]:
    """``rows`` as outcome → count for each of ``hours``."""
    index = {hour: i for i, hour in enumerate(hours)}
    buckets: list[dict[str, int]] = [{} for _ in hours]
    for hour, outcome, count in rows:
        i = index.get(hour_of(hour))
        if i is not None:
            buckets[i][outcome] = buckets[i].get(outcome, 0) + count
    return buckets


def sparkline(rows: Hourly, now: datetime) -> Markup:
    """A 24-hour bar sparkline of all verifications, with a text alternative."""
    buckets = [sum(b.values()) for b in per_hour(rows, hours_ending(now, 24))]
    total, top = sum(buckets), max(buckets) or 1
    width, height = 96, 20
    bars = "".join(
        f'<rect x="{i * 4}" y="{height - max(1, round(n / top * height)) if n else height - 1}" width="3" '
        f'height="{max(1, round(n / top * height)) if n else 1}" class="{"bar" if n else "none"}"/>'
        for i, n in enumerate(buckets))
    label = f"{total} verifications in the last 24 hours"
    return Markup(f'<svg class="spark" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
                  f'width="{width}" height="{height}"><title>{label}</title>{bars}</svg>')


def hourly_chart(rows: Hourly, now: datetime, hours: int) -> tuple[Markup, dict[str, int]]:
    """A stacked bar chart of verifications per hour by outcome over the last ``hours``, and the
    totals per outcome (the chart's text alternative is the table the page shows beside it)."""
    span = hours_ending(now, hours)
    buckets = per_hour(rows, span)
    totals: dict[str, int] = {}
    for bucket in buckets:
        for outcome, n in bucket.items():
            totals[outcome] = totals.get(outcome, 0) + n
    top = max((sum(b.values()) for b in buckets), default=0) or 1
    step = 720 / hours
    height = 160
    parts = []
    for i, bucket in enumerate(buckets):
        y = float(height)
        for outcome in sorted(bucket, key=lambda o: (o != "VALID", o)):
            h = bucket[outcome] / top * (height - 10)
            y -= h
            css = OUTCOME_CLASSES.get(outcome, "other")
            parts.append(f'<rect x="{i * step:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" height="{h:.1f}" '
                         f'class="{css}"><title>{span[i]:%Y-%m-%d %H}:00 UTC: {bucket[outcome]} '
                         f'{escape(outcome)}</title></rect>')
    ticks = "".join(f'<text x="{i * step:.1f}" y="{height + 14}" class="tick">{span[i]:%H}h</text>'
                    for i in range(0, hours, max(1, hours // 8)))
    label = (f"Verifications per hour over the last {hours} hours: "
             + (", ".join(f"{n} {o}" for o, n in sorted(totals.items())) or "none"))
    svg = (f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 720 {height + 20}" '
           f'preserveAspectRatio="none"><title>{escape(label)}</title>'
           f'<line x1="0" y1="{height}" x2="720" y2="{height}" class="axis"/>{"".join(parts)}{ticks}</svg>')
    return Markup(svg), totals
