"""Audit sink benchmark: drain N usage events from JetStream into usage_events (DESIGN: ≥ 20k events/s, none lost).

The events (N = --events / 5, in batches of 500) are published to a JetStream usage stream first
(by the service's ``UsagePublisher``); the clock runs from starting the sink until it has committed
them all. The sink is wired as ``keyledger audit-sink`` wires it (``services.bootstrap.workers``):
``AuditSink(UsageTable(db), usage_consumer(bus, settings, SINK.consumer, SINK.batch))``. Baseline,
measured in the same run on the same rows: one COPY of them into a plain table with the same columns and
indexes (no NATS, no decoding, no de-duplication, no partitions), on a plain psycopg connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import psycopg

from bench.common import BenchContext, BenchResult, Row, fresh_database, timed
from keyledger.domain.usage import USAGE_COLUMNS, UsageEvent, encode_batch
from keyledger.services.audit.sink import AuditSink
from keyledger.services.bootstrap.roles import SINK
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus, connect
from keyledger.services.messaging.streams import ensure_usage_stream
from keyledger.services.messaging.usage import UsagePublisher, usage_consumer
from keyledger.services.storage.database import Database, open_database
from keyledger.services.storage.usage_table import UsageTable

TARGET_EVENTS_PER_SECOND = 20_000
TARGET_RATIO = 0.6  # of the raw COPY of the same rows in the same run
PER_MESSAGE = 500
DURABLE, FETCH_BATCH = SINK.consumer, SINK.batch  # the audit sink's, as services/bootstrap wires it
SETTINGS = Settings(usage_stream="KL_BENCH_USAGE", usage_subject="bench.usage")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "curl/8.5.0",
          "python-httpx/0.27.0", "analytics-ingest/2.3 (+https://example.com)")
OUTCOMES = ("VALID",) * 8 + ("FORBIDDEN", "NOT_FOUND", "RATE_LIMITED", "MALFORMED")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def usage_events(n: int, seed: int = 11) -> list[UsageEvent]:
    """``n`` realistic verify events from 2,000 keys over two days (two partitions)."""
    rng, start = random.Random(seed), datetime(2026, 11, 25, 12, tzinfo=UTC)
    events = []
    for i in range(n):
        key = rng.randrange(2_000)
        outcome = rng.choice(OUTCOMES)
        events.append(UsageEvent(
            id=uuid.UUID(int=rng.getrandbits(128), version=4).hex, at=start + timedelta(seconds=i * 172_800 / n),
            action="verify", outcome=outcome, key_id=f"k{key:011d}", start=f"kl_k{key:011d}{key % 9973:04d}",
            organization_id=f"org-{key % 50}", scope="read:data", website_id=f"site-{key % 300}",
            granted_by=f"website:site-{key % 300}" if outcome == "VALID" else None,
            reason="granted by website" if outcome == "VALID" else f"refused: {outcome.lower()}",
            ip=f"203.0.{rng.randrange(256)}.{rng.randrange(256)}", user_agent=rng.choice(AGENTS),
            request_id=uuid.UUID(int=rng.getrandbits(128), version=4).hex))
    return events


@contextlib.asynccontextmanager
async def nats_server(ctx: BenchContext) -> AsyncIterator[str]:
    """The run's NATS server when the context names one, else a private one for this benchmark."""
    url = getattr(ctx, "nats_url", None)  # BenchContext may carry the stack's NATS URL
    if isinstance(url, str) and url:
        yield url
        return
    from tests.support.natsproc import NatsServer

    with tempfile.TemporaryDirectory(prefix="keyledger-bench-nats-") as tmp, NatsServer(Path(tmp) / "js") as server:
        yield server.url


async def publish_all(bus: Bus, events: list[UsageEvent]) -> int:
    """Publish the events in batches the way the usage emitter does (its publisher, 50 in flight);
    returns the number of messages."""
    publisher, sends = UsagePublisher(bus, SETTINGS), []
    for i in range(0, len(events), PER_MESSAGE):
        sends.append(publisher.publish(str(uuid.uuid4()), encode_batch(events[i:i + PER_MESSAGE])))
        if len(sends) == 50:
            assert all(await asyncio.gather(*sends)), "a usage batch was not published"
            sends.clear()
    assert all(await asyncio.gather(*sends)), "a usage batch was not published"
    return (len(events) + PER_MESSAGE - 1) // PER_MESSAGE


async def drain_seconds(db: Database, bus: Bus, n: int) -> tuple[float, AuditSink]:
    """Seconds from starting a sink until it has committed ``n`` events."""
    sink = AuditSink(UsageTable(db), usage_consumer(bus, SETTINGS, DURABLE, FETCH_BATCH))
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(sink.run(stop))
    while sink.stats.stored < n and not task.done():
        await asyncio.sleep(0.005)
    seconds = time.perf_counter() - started
    stop.set()
    await task
    return seconds, sink


async def verify(conn: psycopg.AsyncConnection, n: int, messages: int) -> None:
    """Every event stored exactly once, every batch recorded once; raises AssertionError otherwise."""
    rows, ids = (await (await conn.execute("SELECT count(*), count(DISTINCT id) FROM usage_events")).fetchone()
                 or (0, 0))
    batches = (await (await conn.execute("SELECT count(*) FROM usage_batches")).fetchone() or (0,))[0]
    assert rows == ids == n, f"usage_events holds {rows} rows ({ids} distinct ids), published {n}"
    assert batches == messages, f"{batches} batches recorded, published {messages}"


async def raw_copy_seconds(conn: psycopg.AsyncConnection, events: list[UsageEvent]) -> float:
    """Seconds to COPY the same rows into a plain table with the same columns and indexes (the baseline)."""
    await conn.execute("CREATE TABLE bench_usage_copy (LIKE usage_events INCLUDING DEFAULTS INCLUDING INDEXES)")
    rows = [msgspec.structs.astuple(event) for event in events]
    started = time.perf_counter()
    async with conn.transaction():
        async with conn.cursor().copy(f"COPY bench_usage_copy ({', '.join(USAGE_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)
    return time.perf_counter() - started


async def run(ctx: BenchContext) -> BenchResult:
    """Publish ``ctx.events / 5`` usage events, time the sink draining them, then the raw COPY baseline."""
    n = max(ctx.events // 5, 20 * PER_MESSAGE)
    with timed(f"generate {n:,} usage events", _log):
        events = usage_events(n)
    async with nats_server(ctx) as nats_url, fresh_database(ctx.admin_url) as url:
        bus = await connect(nats_url, "bench-sink")
        try:
            await ensure_usage_stream(bus, SETTINGS)
            with timed(f"publish {n:,} events in batches of {PER_MESSAGE}", _log):
                messages = await publish_all(bus, events)
            async with open_database(url, min_size=1, max_size=2) as db:
                seconds, sink = await drain_seconds(db, bus, n)
            _log(f"  sink drained {n:,} events: {seconds:.2f} s ({sink.stats})")
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await verify(conn, n, messages)
                raw_seconds = await raw_copy_seconds(conn, events)
            _log(f"  baseline: raw COPY of the same rows: {raw_seconds:.2f} s")
            await bus._js.delete_stream(SETTINGS.usage_stream)  # no public delete: reach the JetStream context
        finally:
            await bus.close()
    rate, raw_rate = n / seconds, n / raw_seconds
    return BenchResult([
        Row("audit sink throughput (JetStream → usage_events, committed, with the analytics counts)", rate,
            "events/s", raw_rate, "raw COPY into a plain table", f"≥ {TARGET_RATIO} × raw COPY",
            rate >= TARGET_RATIO * raw_rate, ctx.command),
        Row(f"audit sink wall time, {n:,} events (verified: none lost, none duplicated)", seconds, "s",
            target=f"≤ {n / TARGET_EVENTS_PER_SECOND:.1f} s", met=seconds <= n / TARGET_EVENTS_PER_SECOND,
            command=ctx.command),
    ])
