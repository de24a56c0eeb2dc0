"""Replay benchmark: rebuild the key cache from N realistic events (DESIGN: ≥ 200k events/s).

Baseline, measured in the same run on the same rows: streaming the events' JSON out of
Postgres in position order with ``COPY ... TO STDOUT`` into a null sink (no decode, no fold),
on a plain psycopg connection. Replay itself runs as ``keyledger replay`` runs it:
``replay(ReplaySource(db))`` on a ``Database`` of its own, folding in one process per core; it is also
measured in one process (``--workers 1``), and that run is the one broken down by phase.
"""

from __future__ import annotations

import gc
import inspect
import random
import sys
import time
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection

from bench import breakdown
from bench.common import BenchContext, BenchResult, Row, fresh_database, timed
from bench.eventgen import load, plan
from keyledger.domain.events import decode_event
from keyledger.domain.key import fold
from keyledger.services.cache.replay import ReplayResult, replay
from keyledger.services.storage.checkpoints import read_checkpoint
from keyledger.services.storage.database import Database, open_database
from keyledger.services.storage.key_cache_table import PROJECTOR, decode_state
from keyledger.services.storage.replay_source import ReplaySource

TARGET_EVENTS_PER_SECOND = 200_000
TARGET_RATIO = 0.5  # of the raw COPY read of the same events in the same run
EVENTS_PER_KEY = 10
PAGE_SIZE: int = inspect.signature(replay).parameters["page_size"].default  # replay's default page


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def raw_read_seconds(conn: AsyncConnection) -> float:
    """Seconds to stream every event's JSON, in position order, into a null sink (the baseline)."""
    started = time.perf_counter()
    async with conn.cursor().copy("COPY (SELECT data FROM events ORDER BY global_position) TO STDOUT") as copy:
        async for _ in copy:
            pass
    return time.perf_counter() - started


async def paged_read_seconds(source: ReplaySource, head: int, page_size: int = PAGE_SIZE) -> float:
    """Seconds to read the whole store through replay's own page source, without decoding or folding."""
    started, events = time.perf_counter(), 0
    async for page in source.pages(head, page_size):
        events += page.positions.count(",") + 1  # a JSON array of positions, never empty
    seconds = time.perf_counter() - started
    assert events == head, f"read {events} events, the store's head is {head}"
    return seconds


@dataclass(frozen=True)
class Expected:
    """What the rebuilt key cache must hold: every generated key, this many of them revoked."""

    key_ids: list[str]
    revoked: int


async def verify(conn: AsyncConnection, expected: Expected, head: int, samples: int = 5) -> None:
    """Cheap correctness checks on the rebuilt table; raises AssertionError on a mismatch."""
    keys, revoked = (await (await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE state->>'revoked_at' IS NOT NULL) FROM key_cache")).fetchone()
                     or (0, 0))
    assert keys == len(expected.key_ids), f"key_cache has {keys} rows, generated {len(expected.key_ids)} keys"
    assert revoked == expected.revoked, f"{revoked} revoked keys in key_cache, generated {expected.revoked}"
    assert (await read_checkpoint(conn, PROJECTOR))[0] == head, "checkpoint is not at the head"
    for key_id in random.Random(3).sample(expected.key_ids, samples):
        cur = await conn.execute("SELECT data::text FROM events WHERE stream_id = %s ORDER BY version", (key_id,))
        folded = fold(decode_event(row[0]) for row in await cur.fetchall())
        stored = await (await conn.execute("SELECT version, state::text FROM key_cache WHERE key_id = %s",
                                           (key_id,))).fetchone()
        assert stored is not None and folded is not None, f"key {key_id} missing"
        assert stored[0] == folded.version == EVENTS_PER_KEY, f"key {key_id}: version {stored[0]}"
        assert decode_state(stored[1]) == folded, f"key {key_id}: state differs from folding its stream"


async def _prepare(conn: AsyncConnection, events: int) -> tuple[Expected, int]:
    """Generate and load the events; only what verification needs stays in memory."""
    with timed("plan workload", _log):
        workload = plan(max(events // EVENTS_PER_KEY, 1), EVENTS_PER_KEY)
    with timed(f"generate + COPY {len(workload.order):,} events + VACUUM ANALYZE", _log):
        head = await load(conn, workload)
    return Expected(workload.key_ids, workload.revoked), head


async def _replay_gc_paused(db: Database) -> ReplayResult:
    """The real replay with the cyclic GC paused by the caller (what-if diagnostic)."""
    gc.disable()
    try:
        return await replay(ReplaySource(db))
    finally:
        gc.enable()


@dataclass(frozen=True)
class Passes:
    """Everything measured on one loaded store."""

    raw_seconds: float
    paged_seconds: float
    replay: ReplayResult
    call_seconds: float  # the caller's wall clock around that replay
    one_process: ReplayResult
    gc_paused: ReplayResult
    breakdown: breakdown.Breakdown


async def measure(conn: AsyncConnection, db: Database, expected: Expected, head: int) -> Passes:
    """Baseline read (on ``conn``), replay's read alone, replay (verified), replay in one process, then
    replay instrumented (in one process) and GC-paused (replay's passes on ``db``, as the service runs it)."""
    await raw_read_seconds(conn)  # warm-up: the same pages are cached for every pass
    with timed("baseline: COPY TO STDOUT null sink", _log):
        raw = await raw_read_seconds(conn)
    with timed("replay's page source only (ReplaySource.pages, no decode/fold)", _log):
        paged = await paged_read_seconds(ReplaySource(db), head)
    gc.collect()
    with timed("replay (keyledger.services.cache.replay.replay)", _log) as call:
        result = await replay(ReplaySource(db))
    _log(f"  (replay's own clock: {result.seconds:.2f} s, {result.workers} folding processes)")
    with timed("verify", _log):
        await verify(conn, expected, head)
    gc.collect()
    with timed("replay in one process (workers=1)", _log):
        one = await replay(ReplaySource(db), workers=1)
    await verify(conn, expected, head)
    gc.collect()
    with timed("replay again, instrumented", _log):
        instrumented = await breakdown.timed_replay(db, head, PAGE_SIZE)
    gc.collect()
    with timed("replay again, cyclic GC paused by the caller", _log):
        paused = await _replay_gc_paused(db)
    await verify(conn, expected, head)
    return Passes(raw, paged, result, call.seconds, one, paused, instrumented)


def rows(passes: Passes, head: int, command: str) -> list[Row]:
    """The result rows; every ratio is against the raw COPY read of the same run."""
    rate, raw_rate, target = passes.replay.events_per_second, head / passes.raw_seconds, TARGET_EVENTS_PER_SECOND
    seconds = passes.replay.seconds
    return [
        Row("replay throughput", rate, "events/s", raw_rate, "raw COPY read", f"≥ {TARGET_RATIO} × raw COPY read",
            rate >= TARGET_RATIO * raw_rate, command),
        Row(f"replay wall time, {head:,} events", seconds, "s", target=f"≤ {head / target:.1f} s",
            met=seconds <= head / target, command=command),
        Row(f"replay in one process (`--workers 1`; above: {passes.replay.workers})",
            passes.one_process.events_per_second, "events/s", raw_rate, "raw COPY read", "(diagnostic)", None,
            command),
        Row("replay's page query alone (read, no decode/fold)", head / passes.paged_seconds, "events/s", raw_rate,
            "raw COPY read", "(diagnostic)", None, command),
        Row("replay as its caller waits for it (incl. freeing and GC after replay's own clock)",
            head / passes.call_seconds, "events/s", raw_rate, "raw COPY read", "(diagnostic)", None, command),
        Row("what-if: replay with cyclic GC paused by the caller", passes.gc_paused.events_per_second, "events/s",
            raw_rate, "raw COPY read", "(diagnostic)", None, command),
    ]


async def run(ctx: BenchContext) -> BenchResult:
    """Load ``ctx.events`` events into a fresh database, then measure replay against the raw read."""
    async with fresh_database(ctx.admin_url) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            expected, head = await _prepare(conn, ctx.events)
            async with open_database(url, min_size=1, max_size=2) as db:
                passes = await measure(conn, db, expected, head)
    return BenchResult(rows(passes, head, ctx.command), [breakdown.markdown(passes.breakdown, head)])
