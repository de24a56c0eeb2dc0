"""What every benchmark shares: its context, its result rows, a fresh database, a stopwatch."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import make_conninfo

from keyledger.services.storage.migrations import migrate


@dataclass(frozen=True)
class BenchContext:
    """What a benchmark may use: the private server's admin URL and the requested size."""

    admin_url: str
    events: int
    command: str  # how to re-run exactly this benchmark, for the results table


@dataclass(frozen=True)
class Row:
    """One line of the results table. ``baseline`` is measured in the same run, never hard-coded."""

    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_what: str = ""
    target: str = ""
    met: bool | None = None
    command: str = ""

    @property
    def ratio(self) -> float | None:
        """value / baseline, when there is a baseline."""
        return self.value / self.baseline if self.baseline else None


@dataclass
class BenchResult:
    """A benchmark's rows plus optional markdown sections (e.g. where the time goes) for RESULTS.md."""

    rows: list[Row] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)


Benchmark = Callable[[BenchContext], Awaitable[BenchResult]]


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, prefix: str = "kl_bench") -> AsyncIterator[str]:
    """A new, migrated database on the server of ``admin_url``; dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_conninfo(admin_url, dbname=name)
        await migrate(url)
        yield url
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Stopwatch:
    """Measures wall-clock seconds of ``with watch:`` blocks; ``seconds`` holds the last one."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


@contextlib.contextmanager
def timed(label: str, log: Callable[[str], None]) -> Iterator[Stopwatch]:
    """A Stopwatch that logs ``label: N.NN s`` when the block ends."""
    watch = Stopwatch()
    with watch:
        yield watch
    log(f"  {label}: {watch.seconds:.2f} s")
