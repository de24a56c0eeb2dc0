"""Clocks for tests: a settable one for components, and the reference that e2e servers follow.

An e2e server's clock starts at the instant given in ``KEYLEDGER_TEST_CLOCK_START`` when the
process creates it, then runs at the real pace. A test cannot know that moment exactly, so it
keeps a ``ReferenceClock`` and launches every server with ``start_env()``, the reference's reading
at launch. A server's clock then reads at most its start-up time behind the reference and never
ahead of it, whenever it was started. So the first window of a reference that starts on a minute
begins before any server answers, and ``shared_window`` can name a window every server is in.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.support.wait import until_sync

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
"""Where test time begins: far from the real date, on a minute, so windows are predictable."""

WINDOW = timedelta(minutes=1)  # the rate limits' and throttles' fixed windows


class SettableClock:
    """A clock a test moves by hand, for components that take ``clock: Callable[[], datetime]``:
    ``clock()`` reads it, ``clock.now = ...`` or ``clock.advance(...)`` moves it."""

    def __init__(self, now: datetime = EPOCH) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> datetime:
        """Move the clock forward by ``by``; the new time."""
        self.now += by
        return self.now


def iso(moment: datetime) -> str:
    """``moment`` as the ISO text with zone that the API and the settings accept."""
    return moment.astimezone(UTC).isoformat()


def window_of(moment: datetime) -> datetime:
    """The start of the one-minute window ``moment`` falls in."""
    return moment.replace(second=0, microsecond=0)


class ReferenceClock:
    """The time that one test's servers share: ``start`` when created, then the real pace."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.start = start
        self._origin = time.monotonic()

    def now(self) -> datetime:
        """The reference time now (no server's clock is ahead of it)."""
        return self.start + timedelta(seconds=self.elapsed())

    def elapsed(self) -> float:
        """Seconds since the reference started."""
        return time.monotonic() - self._origin

    def start_env(self, ahead: timedelta = timedelta(0)) -> dict[str, str]:
        """The setting that starts a server launched now at the reference's time (plus ``ahead``)."""
        return {"KEYLEDGER_TEST_CLOCK_START": iso(self.now() + ahead)}

    def shared_window(self, needed: float, lag: float) -> datetime:
        """The start of a one-minute window that every server is in now and stays in for ``needed``
        more seconds, waiting for the next window when the current one has less left. ``lag`` bounds
        how far behind the reference the servers' clocks read: their longest start-up time."""
        assert needed + lag < WINDOW.total_seconds(), (
            f"servers that took {lag:.1f}s to start cannot be placed surely in one window for {needed}s")
        now = self.now()
        window = window_of(now)
        slowest = max(now - timedelta(seconds=lag), self.start)  # no server's clock reads earlier
        if slowest >= window and (window + WINDOW - now).total_seconds() >= needed:
            return window
        following = window + WINDOW
        until_sync(lambda: self.now() - timedelta(seconds=lag) >= following, timeout=WINDOW.total_seconds() + lag,
                   interval=0.05, what=f"every server's clock to reach {iso(following)}")
        return following
