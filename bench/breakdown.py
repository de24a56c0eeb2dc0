"""Where replay's time goes, measured inside the real ``services.replay.replay`` call.

The fold phase (start until the progress callback reports the last page) is split by clocks:
JSON decoding is timed by a wrapper around the page decoder; the main thread's CPU time minus
decoding is folding (plus receiving pages in Python); wall time minus CPU time is waiting for
Postgres. This holds whether or not replay overlaps page queries with folding. After the fold,
a thin connection proxy times each SQL statement, the COPY into the rebuild table and the swap.
Time in cyclic garbage collections (``gc.callbacks``) is taken out of every phase and shown alone.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

from psycopg import AsyncConnection

import keyledger.services.cache.replay as replay_module

WAIT, DECODE, FOLD = "waiting for Postgres pages", "decode (msgspec)", "fold (apply/evolve) + receiving pages"
GC = "cyclic GC collections (all phases)"
COPY, SWAP = "COPY into rebuild table (incl. encode_state)", "swap transaction"
PHASES = (GC, WAIT, DECODE, FOLD, "create rebuild table", "last positions query", COPY, "primary key build", SWAP,
          "other statements")


def _label(query: Any) -> str:
    sql = str(query)
    if "GROUP BY stream_id" in sql:
        return "last positions query"
    if "ADD CONSTRAINT" in sql:
        return "primary key build"
    if sql.lstrip().startswith(("DROP TABLE IF EXISTS", "CREATE TABLE")):
        return "create rebuild table"
    return "other statements"


class _Timings:
    """Seconds per phase; statements count only after the fold and outside the swap transaction."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.started = time.perf_counter()
        self.started_cpu = time.thread_time()
        self.folded = False
        self.in_transaction = False
        self.gc_seconds = 0.0
        self._gc_started = 0.0

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """``gc.callbacks`` hook: add up the time spent in collections."""
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_seconds += time.perf_counter() - self._gc_started

    def progress(self, done: int, total: int) -> None:
        """Progress callback: the last page closes the fold phase."""
        if done >= total and not self.folded:
            self.folded = True
            wall, cpu = time.perf_counter() - self.started, time.thread_time() - self.started_cpu
            self.seconds[WAIT] = max(wall - cpu, 0.0)
            self.seconds[FOLD] = cpu - self.seconds[DECODE] - self.gc_seconds

    @contextlib.contextmanager
    def measure(self, label: str, always: bool = False) -> Iterator[None]:
        """Add the block's seconds, less collections, to ``label``."""
        started, gc_before = time.perf_counter(), self.gc_seconds
        try:
            yield
        finally:
            if always or (self.folded and not self.in_transaction):
                self.seconds[label] += time.perf_counter() - started - (self.gc_seconds - gc_before)


class _TimedCursor:
    def __init__(self, cursor: Any, timings: _Timings) -> None:
        self._cursor, self._timings = cursor, timings

    @contextlib.asynccontextmanager
    async def copy(self, statement: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        with self._timings.measure(COPY):
            async with self._cursor.copy(statement, *args, **kwargs) as copy:
                yield copy

    async def __aenter__(self) -> Any:
        return await self._cursor.__aenter__()

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._cursor.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _TimedConnection:
    def __init__(self, conn: AsyncConnection, timings: _Timings) -> None:
        self._conn, self._timings = conn, timings

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        with self._timings.measure(_label(query)):
            return await self._conn.execute(query, params, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> _TimedCursor:
        return _TimedCursor(self._conn.cursor(*args, **kwargs), self._timings)

    @contextlib.asynccontextmanager
    async def transaction(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        with self._timings.measure(SWAP, always=True):
            self._timings.in_transaction = True
            try:
                async with self._conn.transaction(*args, **kwargs) as tx:
                    yield tx
            finally:
                self._timings.in_transaction = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _TimedDecoder:
    def __init__(self, decoder: Any, timings: _Timings) -> None:
        self._decoder, self._timings = decoder, timings

    def decode(self, data: Any) -> Any:
        with self._timings.measure(DECODE, always=True):
            return self._decoder.decode(data)


async def timed_replay(conn: AsyncConnection) -> tuple[float, dict[str, float]]:
    """Run the real replay with timers; returns its total seconds and seconds per phase."""
    original = replay_module._page_decoder
    timings = _Timings()
    replay_module._page_decoder = _TimedDecoder(original, timings)  # type: ignore[assignment]
    gc.callbacks.append(timings.on_gc)
    try:
        result = await replay_module.replay(_TimedConnection(conn, timings),  # type: ignore[arg-type]
                                            progress=timings.progress)
    finally:
        gc.callbacks.remove(timings.on_gc)
        replay_module._page_decoder = original
    return result.seconds, {**timings.seconds, GC: timings.gc_seconds}


def markdown(total: float, phases: dict[str, float], events: int) -> str:
    """The "where the time goes" section for RESULTS.md."""
    lines = [f"### Where replay's time goes ({events:,} events; instrumented second run: {total:.2f} s)", "",
             "| phase | seconds | share |", "| --- | ---: | ---: |"]
    for name in PHASES:
        if name in phases:
            lines.append(f"| {name} | {phases[name]:.2f} | {phases[name] / total:.0%} |")
    rest = total - sum(phases.values())
    lines.append(f"| rest (Python between statements) | {rest:.2f} | {rest / total:.0%} |")
    return "\n".join(lines)
