"""The process clock: real UTC time, or (tests only) a clock that starts at a chosen instant and then
runs at the real pace. The real pace is read from ``time.monotonic``, replaced here by a hand-moved one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from keyledger.services import clock as clock_module
from keyledger.services.clock import clock_from, epoch, utc_now

START = datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)


def test_no_start_is_the_real_utc_clock() -> None:
    assert clock_from(None) is utc_now
    assert utc_now().tzinfo == UTC


def test_a_started_clock_begins_at_its_start_and_follows_the_monotonic_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = SimpleNamespace(monotonic=lambda: 1000.0)
    monkeypatch.setattr(clock_module, "time", ticks)
    clock = clock_from(START)
    assert clock() == START
    ticks.monotonic = lambda: 1061.5
    assert clock() == START + timedelta(seconds=61.5)
    assert epoch(clock)() == START.timestamp() + 61.5
