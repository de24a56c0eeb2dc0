"""Where replay's time goes, measured inside the real ``services.replay.replay`` call.

A thin connection proxy times every SQL statement, the COPY into the rebuild table and the
swap transaction; a wrapper around the page decoder times JSON decoding; the progress
callback marks the end of the fold. Folding (apply/evolve) is what remains of the fold phase.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from psycopg import AsyncConnection

import services.replay as replay_module

PHASES = ("head query", "page queries (Postgres read + transfer)", "decode (msgspec)", "fold (apply/evolve)",
          "create rebuild table", "last positions query", "COPY into rebuild table (incl. encode_state)",
          "primary key build", "swap transaction", "other")


def _label(query: Any) -> str:
    sql = str(query)
    if "event_position" in sql:
        return "head query"
    if "string_agg" in sql:
        return "page queries (Postgres read + transfer)"
    if "GROUP BY stream_id" in sql:
        return "last positions query"
    if "ADD CONSTRAINT" in sql:
        return "primary key build"
    if sql.lstrip().startswith(("DROP TABLE IF EXISTS", "CREATE TABLE")):
        return "create rebuild table"
    return "other"


class _Timings:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.in_transaction = False

    @contextlib.contextmanager
    def measure(self, label: str, nested: bool = False):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            yield
        finally:
            if nested or not self.in_transaction:
                self.seconds[label] += time.perf_counter() - started


class _TimedCursor:
    def __init__(self, cursor: Any, timings: _Timings) -> None:
        self._cursor, self._timings = cursor, timings

    @contextlib.asynccontextmanager
    async def copy(self, statement: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        with self._timings.measure("COPY into rebuild table (incl. encode_state)"):
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
        with self._timings.measure("swap transaction", nested=True):
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
        with self._timings.measure("decode (msgspec)"):
            return self._decoder.decode(data)


async def timed_replay(conn: AsyncConnection) -> tuple[float, dict[str, float]]:
    """Run the real replay with timers; returns its total seconds and seconds per phase."""
    timings, fold_end = _Timings(), [0.0]
    original = replay_module._page_decoder
    replay_module._page_decoder = _TimedDecoder(original, timings)  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        result = await replay_module.replay(_TimedConnection(conn, timings),  # type: ignore[arg-type]
                                            progress=lambda done, total: fold_end.__setitem__(0, time.perf_counter()))
    finally:
        replay_module._page_decoder = original
    phases = dict(timings.seconds)
    fold_seconds = (fold_end[0] or started) - started
    phases["fold (apply/evolve)"] = fold_seconds - sum(phases.get(name, 0.0) for name in PHASES[:3])
    return result.seconds, phases


def markdown(total: float, phases: dict[str, float], events: int) -> str:
    """The "where the time goes" section for RESULTS.md."""
    lines = [f"### Where replay's time goes ({events:,} events, instrumented run: {total:.2f} s)", "",
             "| phase | seconds | share |", "| --- | ---: | ---: |"]
    for name in PHASES:
        if phases.get(name):
            lines.append(f"| {name} | {phases[name]:.2f} | {phases[name] / total:.0%} |")
    rest = total - sum(phases.values())
    lines.append(f"| unaccounted (Python between statements) | {rest:.2f} | {rest / total:.0%} |")
    return "\n".join(lines)
