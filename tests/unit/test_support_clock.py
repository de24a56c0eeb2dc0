"""The e2e reference clock (``tests.support.clock``): the start it hands to servers, and the minute
window it promises every server is in. Real time is replaced by a hand-moved monotonic clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support import clock as clock_module
from tests.support.clock import EPOCH, ReferenceClock, SettableClock


@pytest.fixture
def ticks(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """``time.monotonic`` as the clock module sees it; ``until_sync`` there moves it in 0.5 s steps."""
    fake = SimpleNamespace(now=100.0)
    fake.monotonic = lambda: fake.now
    monkeypatch.setattr(clock_module, "time", fake)

    def until_sync(condition: Callable[[], Any], **_: Any) -> Any:
        while not condition():
            fake.now += 0.5
        return True

    monkeypatch.setattr(clock_module, "until_sync", until_sync)
    return fake


def test_servers_start_at_the_references_reading(ticks: SimpleNamespace) -> None:
    reference = ReferenceClock()
    ticks.now += 7.25
    assert reference.start_env() == {"KEYLEDGER_TEST_CLOCK_START": "2030-01-01T00:00:07.250000+00:00"}
    assert reference.start_env(ahead=timedelta(days=1))["KEYLEDGER_TEST_CLOCK_START"].startswith("2030-01-02T00:00:07")


def test_the_first_window_serves_when_it_has_time_left(ticks: SimpleNamespace) -> None:
    reference = ReferenceClock()
    ticks.now += 5  # servers that took up to 5 s to start read between 00:00:00 and 00:00:05
    assert reference.shared_window(needed=20, lag=5) == EPOCH
    assert ticks.now == 105  # no waiting


def test_too_little_left_waits_until_every_server_is_in_the_next_window(ticks: SimpleNamespace) -> None:
    reference = ReferenceClock()
    ticks.now += 50
    assert reference.shared_window(needed=20, lag=3) == EPOCH + timedelta(minutes=1)
    assert reference.now() - timedelta(seconds=3) >= EPOCH + timedelta(minutes=1)  # the slowest one too


def test_a_lag_too_long_for_any_window_is_refused(ticks: SimpleNamespace) -> None:
    with pytest.raises(AssertionError, match="cannot be placed"):
        ReferenceClock().shared_window(needed=20, lag=45)


def test_a_settable_clock_moves_only_when_told() -> None:
    clock = SettableClock()
    assert clock() == EPOCH and clock.advance(timedelta(seconds=90)) == EPOCH + timedelta(seconds=90)
    assert clock() == EPOCH + timedelta(seconds=90)
