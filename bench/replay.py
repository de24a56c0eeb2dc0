"""Replay benchmark: rebuild the key cache from N realistic events (DESIGN: ≥ 200k events/s).

Baseline, measured in the same run on the same rows: streaming the events' JSON out of
Postgres in position order with ``COPY ... TO STDOUT`` into a null sink (no decode, no fold).
"""

from __future__ import annotations

import random
import sys
import time

import psycopg
from psycopg import AsyncConnection

from bench import breakdown
from bench.common import BenchContext, BenchResult, Row, fresh_database, timed
from bench.eventgen import Workload, load, plan
from domain.events import decode_event
from domain.key import fold
from services.key_cache_store import PROJECTOR, decode_state, read_checkpoint
from services.replay import _PAGE, replay

TARGET_EVENTS_PER_SECOND = 200_000
EVENTS_PER_KEY = 10


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def raw_read_seconds(conn: AsyncConnection) -> float:
    """Seconds to stream every event's JSON, in position order, into a null sink (the baseline)."""
    started = time.perf_counter()
    async with conn.cursor().copy("COPY (SELECT data FROM events ORDER BY global_position) TO STDOUT") as copy:
        async for _ in copy:
            pass
    return time.perf_counter() - started


async def paged_read_seconds(conn: AsyncConnection, head: int, page_size: int = 20_000) -> float:
    """Seconds to run replay's own page query over the whole store, without decoding or folding."""
    started, position = time.perf_counter(), 0
    while position < head:
        row = await (await conn.execute(_PAGE, (position, min(page_size, head - position)))).fetchone()
        if row is None or row[0] is None:
            break
        position = row[1]
    return time.perf_counter() - started


async def verify(conn: AsyncConnection, workload: Workload, head: int, samples: int = 5) -> None:
    """Cheap correctness checks on the rebuilt table; raises AssertionError on a mismatch."""
    keys, revoked = (await (await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE state->>'revoked_at' IS NOT NULL) FROM key_cache")).fetchone()
                     or (0, 0))
    assert keys == len(workload.key_ids), f"key_cache has {keys} rows, generated {len(workload.key_ids)} keys"
    assert revoked == workload.revoked, f"{revoked} revoked keys in key_cache, generated {workload.revoked}"
    assert (await read_checkpoint(conn, PROJECTOR))[0] == head, "checkpoint is not at the head"
    for key_id in random.Random(3).sample(workload.key_ids, samples):
        cur = await conn.execute("SELECT data::text FROM events WHERE stream_id = %s ORDER BY version", (key_id,))
        expected = fold(decode_event(row[0]) for row in await cur.fetchall())
        stored = await (await conn.execute("SELECT version, state::text FROM key_cache WHERE key_id = %s",
                                           (key_id,))).fetchone()
        assert stored is not None and expected is not None, f"key {key_id} missing"
        assert stored[0] == expected.version == EVENTS_PER_KEY, f"key {key_id}: version {stored[0]}"
        assert decode_state(stored[1]) == expected, f"key {key_id}: state differs from folding its stream"


async def _prepare(conn: AsyncConnection, events: int) -> tuple[Workload, int]:
    with timed("plan workload", _log):
        workload = plan(max(events // EVENTS_PER_KEY, 1), EVENTS_PER_KEY)
    with timed(f"generate + COPY {len(workload.order):,} events + VACUUM ANALYZE", _log):
        head = await load(conn, workload)
    return workload, head


async def _measure(ctx: BenchContext, conn: AsyncConnection, workload: Workload, head: int) -> BenchResult:
    await raw_read_seconds(conn)  # warm-up: same pages in shared buffers / OS cache for every pass
    with timed("baseline: COPY TO STDOUT null sink", _log):
        raw = await raw_read_seconds(conn)
    with timed("replay's page query only (no decode/fold)", _log):
        paged = await paged_read_seconds(conn, head)
    with timed("replay (services.replay.replay)", _log):
        result = await replay(conn)
    with timed("verify", _log):
        await verify(conn, workload, head)
    with timed("replay again, instrumented", _log):
        total, phases = await breakdown.timed_replay(conn)
    rate, raw_rate = result.events_per_second, head / raw
    command = ctx.command
    rows = [
        Row("replay throughput", rate, "events/s", raw_rate, "raw COPY read", f"≥ {TARGET_EVENTS_PER_SECOND:,} events/s",
            rate >= TARGET_EVENTS_PER_SECOND, command),
        Row(f"replay wall time, {head:,} events", result.seconds, "s", None, "",
            f"≤ {head / TARGET_EVENTS_PER_SECOND:.1f} s", result.seconds <= head / TARGET_EVENTS_PER_SECOND, command),
        Row("replay page query alone (read, no decode/fold)", head / paged, "events/s", raw_rate, "raw COPY read",
            "(diagnostic)", None, command),
    ]
    return BenchResult(rows, [breakdown.markdown(total, phases, head)])


async def run(ctx: BenchContext) -> BenchResult:
    """Load ``ctx.events`` events into a fresh database, then measure replay against the raw read."""
    async with fresh_database(ctx.admin_url) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            workload, head = await _prepare(conn, ctx.events)
            return await _measure(ctx, conn, workload, head)
