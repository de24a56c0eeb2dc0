"""Parsing of CLI argument values: access entries, durations and times."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from keyledger.domain.access import AccessEntry
from keyledger.services.clock import as_utc

_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def access_entry(text: str) -> AccessEntry:
    """``RESOURCE[:ID]=SCOPE[,SCOPE...]``, e.g. ``website:abc=read:data`` or ``error_data=read:analytics``."""
    target, sep, scopes = text.partition("=")
    if not sep or not target or not scopes:
        raise argparse.ArgumentTypeError(f"access entry {text!r} must look like RESOURCE[:ID]=SCOPE[,SCOPE]")
    resource, _, resource_id = target.partition(":")
    return AccessEntry(
        resource=resource.strip(),
        id=resource_id.strip() or None,
        scopes=tuple(scope.strip() for scope in scopes.split(",") if scope.strip()),
    )


def duration_seconds(text: str) -> int:
    """A duration such as ``90``, ``90s``, ``15m``, ``1h``, ``7d`` or ``1w`` in seconds."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"duration {text!r} must look like 30s, 15m, 1h, 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def moment(text: str, now: datetime | None = None, direction: int = 1) -> datetime:
    """An ISO-8601 time (UTC when no zone is given) or a duration from now such as ``30d``."""
    try:
        return (now or datetime.now(UTC)) + direction * timedelta(seconds=duration_seconds(text))
    except argparse.ArgumentTypeError:
        pass
    except OverflowError:
        raise argparse.ArgumentTypeError(f"duration {text!r} is out of range: it reaches beyond the years 1 to 9999"
                                         ) from None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"time {text!r} must be ISO-8601 (2027-01-31T00:00:00Z) or like 30d") from None
    try:
        return as_utc(value)
    except ValueError as exc:  # e.g. 0001-01-01T00:00+14:00, which is year 0 in UTC
        raise argparse.ArgumentTypeError(str(exc)) from None


def past_moment(text: str, now: datetime | None = None) -> datetime:
    """Like :func:`moment`, but a duration counts back: ``2h`` means two hours ago."""
    return moment(text, now, direction=-1)
