"""Where replay's time goes, measured around the real ``keyledger.services.cache.replay.replay`` call.

Replay is split in two: storage (``ReplaySource``: the head, pages of events as JSON, and
``swap_in`` of the folded model) and the fold in ``cache/replay.py`` (decode each page, apply
its events). ``TimedReplaySource`` is a ``ReplaySource`` whose public methods are timed, handed
to the real ``replay``:

- fetch: the time replay waits for each next page (``source.pages``), split by this thread's
  CPU clock into receiving the page in Python (psycopg) and waiting for Postgres;
- page handling: from a page being handed out until replay asks for the next one, i.e. decoding
  and folding it (replay's own code): decode is timed where it happens, fold is the rest;
- write: ``swap_in`` (rebuild table, COPY of the model incl. ``encode_state``, primary key,
  swap transaction), split by the CPU clock into Python work and waiting for Postgres.

The fold has no public seam around its decode, so the decode is timed by wrapping replay's page
decoder (``cache.replay._page_decoder``) for the instrumented run only. A pass that decodes the
same pages on its own is no substitute: measured on 1M events it took ~1.4 s of CPU against
~2.0 s for the same decoding inside replay (the fold in between leaves the caches and the
allocator colder), which would move a third of decode into fold. Should that private decoder go
away, the decode is timed in such a separate pass instead, and the table says so.

Time in cyclic GC collections (``gc.callbacks``) is taken out of every phase and shown alone.
Replay pauses the GC; collections after replay's own clock stopped (as it resumes the GC) are
reported apart: the caller waits for them, but they are not in replay's seconds.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

import keyledger.services.cache.replay as replay_module
from keyledger.domain.events import AnyEvent
from keyledger.projections.key_cache import KeyCache
from keyledger.services.cache.replay import replay
from keyledger.services.storage.database import Database
from keyledger.services.storage.replay_source import ALL, EventPage, ReplaySource, Share

GC = "cyclic GC collections (within replay)"
HEAD = "head position query"
WAIT = "fetch: waiting for Postgres pages"
RECEIVE = "fetch: receiving pages in Python (psycopg)"
HANDLE = "page handling: decode + fold"  # split into DECODE and FOLD in the table
DECODE = "decode (msgspec)"
DECODE_APART = "decode (msgspec; timed in a separate pass, understated)"
FOLD = "fold (apply/evolve)"
WRITE_CPU = "write: swap_in, Python (encode_state, COPY rows)"
WRITE_WAIT = "write: swap_in, waiting for Postgres (rebuild table, COPY, primary key, swap)"
PHASES = (GC, HEAD, WAIT, RECEIVE, DECODE, DECODE_APART, FOLD, WRITE_CPU, WRITE_WAIT)
Mark = tuple[float, float, float]  # wall clock, this thread's CPU clock, GC seconds so far


class Timings:
    """Seconds per phase, less the time of cyclic GC collections within them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.gc_seconds = 0.0
        self.gc_until_written = 0.0  # GC seconds when swap_in returned (replay's clock stops right after)
        self._gc_started = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook: add up the time spent in collections."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_seconds += time.perf_counter() - self._gc_started

    def begin(self) -> Mark:
        """A mark to pass to :meth:`end`."""
        return time.perf_counter(), time.thread_time(), self.gc_seconds

    def end(self, mark: Mark, label: str, cpu_label: str | None = None) -> None:
        """Add the seconds since ``mark`` (less collections) to ``label``; with ``cpu_label``, this thread's
        CPU seconds go to ``cpu_label`` and only the rest (waiting) to ``label``."""
        started, cpu, gc_before = mark
        gc_seconds = self.gc_seconds - gc_before
        wall = time.perf_counter() - started - gc_seconds
        if cpu_label is None:
            self.seconds[label] += wall
        else:
            busy = min(max(time.thread_time() - cpu - gc_seconds, 0.0), wall)
            self.seconds[cpu_label] += busy
            self.seconds[label] += wall - busy

    @contextlib.contextmanager
    def span(self, label: str, cpu_label: str | None = None) -> Iterator[None]:
        """Time the block as :meth:`end` does."""
        mark = self.begin()
        try:
            yield
        finally:
            self.end(mark, label, cpu_label)


class TimedReplaySource(ReplaySource):
    """A ReplaySource that times each of its public methods as replay uses them."""

    def __init__(self, db: Database, timings: Timings) -> None:
        super().__init__(db)
        self.timings = timings

    async def head_position(self) -> int:
        with self.timings.span(HEAD):
            return await super().head_position()

    async def pages(self, head: int, page_size: int, share: Share = ALL) -> AsyncIterator[EventPage]:
        timings = self.timings
        asked = timings.begin()
        async for page in super().pages(head, page_size, share):
            timings.end(asked, WAIT, RECEIVE)
            handed = timings.begin()
            yield page
            timings.end(handed, HANDLE)  # replay has decoded and folded the page and asks for the next one
            asked = timings.begin()
        timings.end(asked, WAIT, RECEIVE)

    async def swap_in(self, model: KeyCache, last_positions: dict[str, int], head: int) -> tuple[int, int]:
        with self.timings.span(WRITE_WAIT, WRITE_CPU):
            written = await super().swap_in(model, last_positions, head)
        self.timings.gc_until_written = self.timings.gc_seconds
        return written


class _TimedDecoder:
    """Stands in for replay's page decoder: decodes with it, timing each call."""

    def __init__(self, decoder: Any, timings: Timings) -> None:
        self._decoder, self._timings = decoder, timings

    def decode(self, data: Any) -> Any:
        with self._timings.span(DECODE):
            return self._decoder.decode(data)


@contextlib.contextmanager
def _decoder_timed(timings: Timings) -> Iterator[bool]:
    """Time replay's own page decoder in place while the block runs; False (nothing done) if replay
    no longer has one by that name."""
    original = getattr(replay_module, "_page_decoder", None)
    if not callable(getattr(original, "decode", None)):
        yield False
        return
    setattr(replay_module, "_page_decoder", _TimedDecoder(original, timings))  # noqa: B010 (mypy: a stand-in)
    try:
        yield True
    finally:
        setattr(replay_module, "_page_decoder", original)  # noqa: B010


async def decode_seconds(source: ReplaySource, head: int, page_size: int) -> float:
    """Seconds to decode every page up to ``head`` on its own (only the decoding is timed) with a decoder
    of the type replay uses, the cyclic GC paused as in replay. The fallback for the decode phase."""
    decoder: msgspec.json.Decoder[list[AnyEvent]] = msgspec.json.Decoder(list[AnyEvent])
    seconds, events = 0.0, 0
    enabled = gc.isenabled()
    gc.disable()
    try:
        decoded: list[AnyEvent] = []
        async for page in source.pages(head, page_size):
            started = time.perf_counter()
            decoded = decoder.decode(page.json)  # the previous page stays alive meanwhile, as in replay
            seconds += time.perf_counter() - started
            events += len(decoded)
        del decoded
    finally:
        if enabled:
            gc.enable()
    assert events == head, f"decoded {events} events, the store's head is {head}"
    return seconds


@dataclass(frozen=True)
class Breakdown:
    """An instrumented replay: its own seconds, seconds per phase, and what the caller waited beyond them."""

    total: float  # replay's own clock (ReplayResult.seconds)
    phases: dict[str, float]
    call_seconds: float  # the caller's wall clock around ``await replay(...)``
    gc_after: float  # collections after swap_in returned: as replay resumes the GC


async def timed_replay(db: Database, head: int, page_size: int) -> Breakdown:
    """Run the real replay on a timed source (its decoder timed in place) and break its time down."""
    timings = Timings()
    gc.callbacks.append(timings.on_gc)
    try:
        with _decoder_timed(timings) as decode_in_run:
            started = time.perf_counter()
            result = await replay(TimedReplaySource(db, timings), page_size=page_size, workers=1)
            call_seconds = time.perf_counter() - started
    finally:
        gc.callbacks.remove(timings.on_gc)
    phases = dict(timings.seconds)
    handling = phases.pop(HANDLE, 0.0)
    if decode_in_run:
        decode = phases.pop(DECODE, 0.0)  # timed within page handling
    else:
        gc.collect()
        decode = min(await decode_seconds(ReplaySource(db), head, page_size), handling)
    phases[DECODE if decode_in_run else DECODE_APART] = decode
    phases[FOLD] = handling - decode
    phases[GC] = timings.gc_until_written
    return Breakdown(result.seconds, phases, call_seconds, timings.gc_seconds - timings.gc_until_written)


def markdown(breakdown: Breakdown, events: int) -> str:
    """The "where the time goes" section for RESULTS.md."""
    total, phases = breakdown.total, breakdown.phases
    decoder = ("around replay's page decoder" if DECODE in phases else
               "decode in a separate pass of the same pages (replay's page decoder could not be wrapped)")
    lines = [f"### Where replay's time goes in one process ({events:,} events; instrumented run with "
             f"`--workers 1`: {total:.2f} s)", "",
             "Each folding process does the same per event for its share of the keys. Timed around the storage "
             "half (`ReplaySource`: pages, `swap_in`) as the real `replay` calls it, "
             f"and {decoder}; fetch and write are split into Python CPU and waiting by this thread's CPU clock; "
             "fold is page handling minus decode.", "",
             "| phase | seconds | share |", "| --- | ---: | ---: |"]
    for name in PHASES:
        if name in phases:
            lines.append(f"| {name} | {phases[name]:.2f} | {phases[name] / total:.0%} |")
    rest = total - sum(phases.values())
    lines.append(f"| rest (replay's Python between phases) | {rest:.2f} | {rest / total:.0%} |")
    beyond = breakdown.call_seconds - total
    lines += ["", f"The call returned {beyond:.2f} s after replay's own clock stopped ({breakdown.gc_after:.2f} s "
              "of it in cyclic GC collections as replay resumed the GC, the rest freeing the model): its caller "
              f"waited {breakdown.call_seconds:.2f} s."]
    return "\n".join(lines)
