"""The audit sink and retention against the real Postgres and NATS: exact storage, de-duplication,
daily partitions, append-only rows, malformed messages, a SIGKILLed sink, and retention."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import psycopg
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.usage import USAGE_COLUMNS, UsageEvent, encode_batch
from keyledger.projections.usage_hourly import count_hourly
from keyledger.services.audit.sink import AuditSink, SinkStats
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus, connect
from keyledger.services.messaging.consume import Delivery
from keyledger.services.messaging.streams import ensure_usage_stream
from keyledger.services.messaging.usage import usage_consumer
from keyledger.services.storage.database import Database
from keyledger.services.storage.usage_partitions import UsagePartitions, apply_retention
from keyledger.services.storage.usage_table import UsageBatch, UsageTable
from tests.support.env import clean_env
from tests.support.paths import REPO_ROOT as ROOT
from tests.support.pipeline import isolated_settings, running, sink_for
from tests.support.wait import until

DAY0 = datetime(2026, 11, 20, tzinfo=UTC)
AGENTS = ("curl/8.5", "Mozilla/5.0 (X11; Linux x86_64)", "tab\there, new\nline, back\\slash", "ünïcødé ✓", None)


def usage_events(n: int, start: datetime = DAY0, spread: timedelta = timedelta(hours=1),
                 seed: int = 1) -> list[UsageEvent]:
    """``n`` varied usage events with times in ``[start, start + spread)``."""
    rng = random.Random(seed)
    return [UsageEvent(
        id=uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        at=start + timedelta(microseconds=rng.randrange(int(spread.total_seconds() * 1e6))),
        action=rng.choice(("verify", "POST /v1/keys", "GET /v1/audit")),
        outcome=rng.choice(("VALID", "FORBIDDEN", "NOT_FOUND", "MALFORMED")),
        key_id=rng.choice((f"k{rng.randrange(99):011d}", None)), start=rng.choice(("kl_k0000000001abcd", None)),
        organization_id=rng.choice(("org-1", None)), scope=rng.choice(("read:data", None)),
        granted_by=rng.choice(("website:site-a", "global", None)), reason=rng.choice(("", "granted by global")),
        website_id=rng.choice(("site-a", None)), data=rng.choice(("error_data", None)),
        ip=rng.choice(("203.0.113.5", "2001:db8::1", None)), user_agent=rng.choice(AGENTS),
        request_id=rng.choice((uuid.uuid4().hex, None))) for _ in range(n)]


BUSES: dict[int, Bus] = {}  # the Bus behind each usage_stream()'s JetStream context


def consumer_config(ack_wait: float) -> ConsumerConfig:
    """The durable consumer the audit sink creates when it is missing."""
    return ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait,
                          max_ack_pending=20_000)


@asynccontextmanager
async def usage_stream(nats_url: str, settings: Settings) -> AsyncIterator[JetStreamContext]:
    """A JetStream context whose usage stream is created now and deleted afterwards."""
    nc = await connect(nats_url, "test-audit")
    js = nc._js
    await ensure_usage_stream(nc, settings)
    BUSES[id(js)] = nc
    try:
        yield js
    finally:
        try:
            await js.delete_stream(settings.usage_stream)
        finally:
            await nc.close()


async def publish(js: JetStreamContext, settings: Settings, events: list[UsageEvent], batch_id: str | None = None,
                  msg_id: str | None = None) -> str:
    """Publish one batch the way the usage emitter does; returns its batch id."""
    batch_id = batch_id or str(uuid.uuid4())
    await js.publish(settings.usage_subject, encode_batch(events),
                     headers={"Nats-Msg-Id": msg_id or batch_id, "Kl-Batch-Id": batch_id})
    return batch_id


async def stored(pool: AsyncConnectionPool) -> dict[str, UsageEvent]:
    """Every row of usage_events as a UsageEvent, by id."""
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_events")
        rows = await cur.fetchall()
    events = [UsageEvent(**dict(zip(USAGE_COLUMNS, (row[0].hex, *row[1:]), strict=True))) for row in rows]
    assert len(events) == len({e.id for e in events}), "an event is stored more than once"
    return {e.id: e for e in events}


async def scalar(pool: AsyncConnectionPool, query: str) -> object:
    """The single value ``query`` returns."""
    async with pool.connection() as conn:
        row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return row[0]


async def hourly(pool: AsyncConnectionPool) -> dict[tuple[str, datetime, str], int]:
    """The ``usage_hourly`` projection as ``(key_id, hour, outcome) -> count``."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT key_id, hour, outcome, count FROM usage_hourly")
        return {(k, h, o): n for k, h, o, n in await cur.fetchall()}


async def partitions(pool: AsyncConnectionPool) -> dict[str, int]:
    """Each partition of usage_events (empty ones too) with its number of rows."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                 " WHERE i.inhparent = 'usage_events'::regclass")
        names = {name: 0 for name, in await cur.fetchall()}
        cur = await conn.execute("SELECT tableoid::regclass::text, count(*) FROM usage_events GROUP BY 1")
        return {**names, **dict(await cur.fetchall())}


async def reaches(sink: AuditSink, **counts: int) -> bool:
    """Whether the sink's stats have reached ``counts``."""
    return all(getattr(sink.stats, name) >= value for name, value in counts.items())


async def test_batches_are_stored_exactly(pool: AsyncConnectionPool, db: Database, nats_url: str) -> None:
    settings = isolated_settings()
    events = usage_events(1500)
    async with usage_stream(nats_url, settings) as js:
        sink = sink_for(db, BUSES[id(js)], settings, fetch_batch=4)
        batch_ids = [await publish(js, settings, events[i:i + 100]) for i in range(0, 1000, 100)]
        async with running(sink.run):
            await until(lambda: reaches(sink, stored=1000), what="the first batches")
            batch_ids += [await publish(js, settings, events[i:i + 250]) for i in range(1000, 1500, 250)]
            await until(lambda: reaches(sink, stored=1500), what="the later batches")
        assert sink.stats == SinkStats(stored=1500, batches=12)
        assert await stored(pool) == {e.id: e for e in events}
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT batch_id::text, events FROM usage_batches")
            assert dict(await cur.fetchall()) == {b: 100 if i < 10 else 250 for i, b in enumerate(batch_ids)}


async def test_a_batch_published_again_is_stored_once(pool: AsyncConnectionPool, db: Database, nats_url: str) -> None:
    settings = isolated_settings()
    first, second = usage_events(50, seed=2), usage_events(30, seed=3)
    async with usage_stream(nats_url, settings) as js:
        batch = await publish(js, settings, first)
        ack = await js.publish(settings.usage_subject, encode_batch(first), headers={"Nats-Msg-Id": batch})
        assert ack.duplicate  # the same Nats-Msg-Id: JetStream itself drops it
        await publish(js, settings, first, batch_id=batch, msg_id=str(uuid.uuid4()))  # same fetch as the first
        await js.publish(settings.usage_subject, encode_batch(second))  # no headers: id derived from the body
        sink = sink_for(db, BUSES[id(js)], settings)
        async with running(sink.run):
            await until(lambda: reaches(sink, stored=80), what="the batches")
            await publish(js, settings, first, batch_id=batch, msg_id=str(uuid.uuid4()))  # a later fetch
            await js.publish(settings.usage_subject, encode_batch(second))
            await until(lambda: reaches(sink, duplicates=3), what="the duplicates")
        assert sink.stats == SinkStats(stored=80, batches=2, duplicates=3)
        assert await stored(pool) == {e.id: e for e in first + second}
        assert await hourly(pool) == dict(count_hourly(first + second))  # duplicates counted once


async def test_a_batch_committed_but_not_acked_is_skipped_when_redelivered(pool: AsyncConnectionPool, db: Database,
                                                                           nats_url: str) -> None:
    settings = isolated_settings()
    events = usage_events(400, seed=4)
    async with usage_stream(nats_url, settings) as js:
        for i in range(0, 400, 100):
            await publish(js, settings, events[i:i + 100])
        subscription = await js.pull_subscribe(settings.usage_subject, durable="audit-sink",
                                               stream=settings.usage_stream, config=consumer_config(30.0))
        msgs = await subscription.fetch(4, timeout=2)
        assert len(msgs) == 4

        async def lost() -> None:
            """The sink dies after its commit, before its acks reach NATS."""

        for msg in msgs:
            msg.ack = lost  # type: ignore[method-assign]
        crashed = sink_for(db, BUSES[id(js)], settings)
        await crashed.commit(await crashed.accept([Delivery(msg) for msg in msgs]))
        assert crashed.stats == SinkStats(stored=400, batches=4)
        for msg in msgs:  # redelivered at once rather than after the ack wait
            await msg.nak()
        sink = sink_for(db, BUSES[id(js)], settings)
        async with running(sink.run):
            await until(lambda: reaches(sink, duplicates=4), what="the redelivered batches")
        assert sink.stats == SinkStats(duplicates=4)
        assert await stored(pool) == {e.id: e for e in events}


async def test_partitions_are_created_per_utc_day(pool: AsyncConnectionPool, db: Database, nats_url: str) -> None:
    settings = isolated_settings()
    spread = usage_events(600, spread=timedelta(days=3), seed=5)
    plus5 = timezone(timedelta(hours=5))  # 2026-11-24 01:30 +05:00 is 2026-11-23 20:30 UTC
    near_midnight = UsageEvent(id=uuid.uuid4().hex, at=datetime(2026, 11, 24, 1, 30, tzinfo=plus5),
                               action="verify", outcome="VALID")
    async with usage_stream(nats_url, settings) as js:
        for i in range(0, 600, 60):
            await publish(js, settings, spread[i:i + 60])
        await publish(js, settings, [near_midnight])
        sinks = [sink_for(db, BUSES[id(js)], settings, fetch_batch=1) for _ in range(3)]  # racing to create them
        async with running(*(sink.run for sink in sinks)):
            await until(lambda: _total_stored(sinks, 601), what="every event")
    per_day: dict[str, int] = {}
    for event in [*spread, near_midnight]:
        name = f"usage_events_{event.at.astimezone(UTC):%Y%m%d}"
        per_day[name] = per_day.get(name, 0) + 1
    assert await partitions(pool) == per_day and len(per_day) == 4
    assert len(await stored(pool)) == 601


async def _total_stored(sinks: list[AuditSink], n: int) -> bool:
    return sum(sink.stats.stored for sink in sinks) >= n


async def test_usage_rows_cannot_be_updated_or_deleted(pool: AsyncConnectionPool, db: Database, nats_url: str) -> None:
    settings = isolated_settings()
    async with usage_stream(nats_url, settings) as js:
        sink = sink_for(db, BUSES[id(js)], settings)
        await publish(js, settings, usage_events(10, seed=6))
        async with running(sink.run):
            await until(lambda: reaches(sink, stored=10), what="the batch")
    async with pool.connection() as conn:
        for statement in ("UPDATE usage_events SET outcome = 'VALID'", "DELETE FROM usage_events",
                          f"UPDATE usage_events_{DAY0:%Y%m%d} SET ip = NULL",
                          f"DELETE FROM usage_events_{DAY0:%Y%m%d}"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                await conn.execute(statement)
    assert await scalar(pool, "SELECT count(*) FROM usage_events") == 10


async def test_malformed_messages_are_dropped_without_wedging_the_sink(
        pool: AsyncConnectionPool, db: Database, nats_url: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = isolated_settings()
    good = usage_events(300, seed=7)
    naive = b'[{"id": "%s", "at": "2026-11-20T10:00:00", "action": "verify", "outcome": "VALID"}]' % (
        uuid.uuid4().hex.encode())
    bad_id = [UsageEvent(id="not-a-uuid", at=DAY0, action="verify", outcome="VALID")]
    nul = [UsageEvent(id=uuid.uuid4().hex, at=DAY0, action="verify", outcome="VALID", user_agent="a\x00b")]
    async with usage_stream(nats_url, settings) as js:
        await publish(js, settings, good[:100])
        for body in (b"not json at all", b'[{"id": 1}]', naive, b'{"secret": "kl_do-not-log-me"}'):
            await js.publish(settings.usage_subject, body, headers={"Kl-Batch-Id": str(uuid.uuid4())})
        await publish(js, settings, bad_id)  # Postgres refuses these two events: set aside, one by one
        await publish(js, settings, good[100:200])
        await publish(js, settings, nul)
        await publish(js, settings, good[200:])
        sink = sink_for(db, BUSES[id(js)], settings)
        async with running(sink.run):
            await until(lambda: reaches(sink, stored=300, malformed=4, dead_letters=2), what="the good batches")
            info = await js.consumer_info(settings.usage_stream, "audit-sink")
            assert (info.num_pending, info.num_ack_pending) == (0, 0)
    assert sink.stats == SinkStats(stored=300, batches=5, malformed=4, dead_letters=2)
    assert await stored(pool) == {e.id: e for e in good}
    assert await scalar(pool, "SELECT count(*) FROM usage_batches") == 5
    assert await scalar(pool, "SELECT count(*) FROM usage_dead_letters") == 2
    assert "kl_do-not-log-me" not in caplog.text and "a\x00b" not in caplog.text


async def test_a_refused_event_is_set_aside_and_its_batch_neighbours_are_stored(
        pool: AsyncConnectionPool, db: Database, nats_url: str) -> None:
    """The attack: one event Postgres refuses (a NUL, e.g. from a forged or old publisher) must not take
    the other clients' events of its batch, nor those of the batches fetched with it, down with it."""
    settings = isolated_settings()
    neighbours = usage_events(499, seed=8)
    poisoned = UsageEvent(id=uuid.uuid4().hex, at=DAY0, action="GET /v1/keys/a\x00b", outcome="AUTH_REQUIRED",
                          user_agent="\x00")
    others = usage_events(200, seed=9)
    async with usage_stream(nats_url, settings) as js:
        batch = await publish(js, settings, [*neighbours[:250], poisoned, *neighbours[250:]])
        await publish(js, settings, others)
        await publish(js, settings, [*neighbours[:250], poisoned, *neighbours[250:]], batch_id=batch,
                      msg_id=str(uuid.uuid4()))  # redelivered: must not be stored (or set aside) twice
        sink = sink_for(db, BUSES[id(js)], settings)
        async with running(sink.run):
            await until(lambda: reaches(sink, stored=699, dead_letters=1, duplicates=1), what="the batches")
    assert await stored(pool) == {e.id: e for e in neighbours + others}
    assert await hourly(pool) == dict(count_hourly(neighbours + others))
    async with pool.connection() as conn:
        row = await (await conn.execute(
            "SELECT batch_id::text, event_id, reason, body FROM usage_dead_letters")).fetchall()
    assert len(row) == 1 and row[0][0] == batch and row[0][1] == poisoned.id
    assert row[0][2].startswith("UntranslatableCharacter") or row[0][2].startswith("DataError")
    assert msgspec.json.decode(row[0][3], type=UsageEvent) == poisoned  # kept exactly, for investigation


async def test_retention_drops_only_whole_days_before_the_cutoff_and_logs_every_run(
        pool: AsyncConnectionPool, db: Database, database_url: str, nats_url: str) -> None:
    settings = isolated_settings()
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    days = [now - timedelta(days=d) for d in (40, 31, 30, 29, 0)]  # 30 days back is the cutoff's day
    async with usage_stream(nats_url, settings) as js:
        sink = sink_for(db, BUSES[id(js)], settings)
        async with running(sink.run):
            for i, day in enumerate(days):
                await publish(js, settings, usage_events(20, start=day.replace(hour=0), seed=10 + i))
            await until(lambda: reaches(sink, stored=100), what="the old batches")
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                await conn.execute("SET TIME ZONE 'America/St_Johns'")  # bounds are read back in local time
                dropped = await apply_retention(conn, 30, now, actor="test")
                assert await UsagePartitions(db).apply_retention(30, now + timedelta(hours=1), actor=None) == []
                with pytest.raises(ValueError):
                    await apply_retention(conn, 0, now, actor="test")
            assert dropped == ["usage_events_20261017", "usage_events_20261026"]
            assert set(await partitions(pool)) == {"usage_events_20261027", "usage_events_20261028",
                                                   "usage_events_20261126"}
            assert {e.at.date() for e in (await stored(pool)).values()} == {d.date() for d in days[2:]}
            late = usage_events(5, start=days[0].replace(hour=0), seed=20)  # its partition is gone: made again
            await publish(js, settings, late)
            await until(lambda: reaches(sink, stored=105), what="the late batch")
        assert (await partitions(pool))["usage_events_20261017"] == 5
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT actor, keep_days, cutoff, dropped FROM audit_retention_log ORDER BY id")
        assert await cur.fetchall() == [("test", 30, now - timedelta(days=30), dropped),
                                        (None, 30, now - timedelta(days=30) + timedelta(hours=1), [])]
        with pytest.raises(psycopg.errors.RaiseException):
            await conn.execute("DELETE FROM audit_retention_log")


# ---------------------------------------------------------------- a SIGKILLed sink subprocess

BATCHES, PER_BATCH = 200, 100


def sink_env(settings: Settings, database_url: str, nats_url: str) -> dict[str, str]:
    """The environment of a ``python -m keyledger.services.cli audit-sink`` subprocess."""
    return clean_env({"DATABASE_URL": database_url, "NATS_URL": nats_url,
                      "KEYLEDGER_USAGE_STREAM": settings.usage_stream,
                      "KEYLEDGER_USAGE_SUBJECT": settings.usage_subject})


def start_sink(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m keyledger.services.cli audit-sink`` with its output in ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "keyledger.services.cli", "audit-sink"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def output_of(log: Path) -> Callable[[], str]:
    """What the sink printed, for a failure message."""
    return lambda: f"sink output:\n{log.read_text(errors='replace')}"


async def kill_holding_messages(js: JetStreamContext, settings: Settings, pool: AsyncConnectionPool,
                                proc: subprocess.Popen[bytes], log: Path,
                                publishing: asyncio.Task[None]) -> bool | None:
    """Once the sink has committed something new, SIGKILL it while it holds unacked messages;
    returns whether it still held some when it died. None, and the sink left running, when the publisher
    finished first (on a busy machine a sink can start that late): the rest is drained, not killed."""
    floor = await scalar(pool, "SELECT count(*) FROM usage_batches")

    async def holding() -> bool:
        info = await js.consumer_info(settings.usage_stream, "audit-sink")
        return bool(info.num_ack_pending) and await scalar(pool, "SELECT count(*) FROM usage_batches") != floor

    async def holding_or_published() -> str | None:
        return "holding" if await holding() else "published" if publishing.done() else None

    if await until(holding_or_published, timeout=30, what="sink progress", explain=output_of(log)) != "holding":
        return None
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)
    return bool((await js.consumer_info(settings.usage_stream, "audit-sink")).num_ack_pending)


async def test_a_sink_killed_mid_batch_loses_and_duplicates_nothing(
        pool: AsyncConnectionPool, db: Database, database_url: str, nats_url: str, tmp_path: Path) -> None:
    settings = isolated_settings()
    events = usage_events(BATCHES * PER_BATCH, spread=timedelta(days=2), seed=30)
    env, log = sink_env(settings, database_url, nats_url), tmp_path / "audit-sink.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with usage_stream(nats_url, settings) as js:
            # the durable exists before any sink starts, with a short ack wait so the test need not wait 30 s
            config = consumer_config(ack_wait=2.0)
            config.durable_name, config.filter_subject = "audit-sink", settings.usage_subject
            await js.add_consumer(settings.usage_stream, config)

            async def publisher() -> None:
                for i in range(0, len(events), PER_BATCH):
                    await publish(js, settings, events[i:i + PER_BATCH])
                    await asyncio.sleep(0.01)

            publishing = asyncio.create_task(publisher())
            kills: list[bool] = []
            try:
                while len(kills) < 3 and not publishing.done():
                    procs.append(start_sink(env, log))
                    killed = await kill_holding_messages(js, settings, pool, procs[-1], log, publishing)
                    if killed is None:  # still running: it drains the rest
                        break
                    kills.append(killed)
            finally:
                await publishing
            assert any(kills), f"never killed the sink while it held unacked messages: {kills}"
            if procs[-1].poll() is not None:
                procs.append(start_sink(env, log))
            await until(lambda: _count_is(pool, len(events)), timeout=60, what="every event", explain=output_of(log))
            # messages the killed sinks held come back after the ack wait: wait until every one is acked
            await until(lambda: _all_acked(js, settings), timeout=60, what="every message acked",
                        explain=output_of(log))
            procs[-1].terminate()  # before the stream goes: it would create it again
            assert await asyncio.to_thread(procs[-1].wait, 10) == 0, log.read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert await stored(pool) == {e.id: e for e in events}  # every id exactly once, every field intact
    assert await scalar(pool, "SELECT count(*) FROM usage_batches") == BATCHES
    assert await _count_is(pool, len(events))


async def _all_acked(js: JetStreamContext, settings: Settings) -> bool:
    info = await js.consumer_info(settings.usage_stream, "audit-sink")
    return (info.num_pending, info.num_ack_pending) == (0, 0)


async def _count_is(pool: AsyncConnectionPool, n: int) -> bool:
    return await scalar(pool, "SELECT count(*) FROM usage_events") == n


async def test_audit_tables_cannot_be_truncated(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        for table in ("usage_events", "audit_retention_log"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                await conn.execute(f"TRUNCATE {table}")


async def _delivered_unacked(js: JetStreamContext, settings: Settings, durable: str) -> int:
    """Messages the consumer ``durable`` was handed and has not acked (0 before it exists)."""
    try:
        return int((await js.consumer_info(settings.usage_stream, durable)).num_ack_pending)
    except NotFoundError:
        return 0


def acking_recorder() -> tuple[list[int], Callable[[list[Delivery]], Awaitable[None]]]:
    """A consumer's ``process`` that acks every delivery, and the list of how many each call got."""
    calls: list[int] = []

    async def process(deliveries: list[Delivery]) -> None:
        calls.append(len(deliveries))
        for delivery in deliveries:
            await delivery.ack()

    return calls, process


async def test_messages_arriving_while_the_sink_lingers_are_stored_in_one_transaction(nats_url: str) -> None:
    """KEYLEDGER_SINK_LINGER_MS: after a fetch that brought fewer messages than a full batch, the sink keeps
    fetching for a while, so one transaction (one ``process`` call) covers the messages that arrive meanwhile."""
    settings = msgspec.structs.replace(isolated_settings(), sink_linger_ms=10_000)
    calls, process = acking_recorder()
    async with usage_stream(nats_url, settings) as js:
        consumer = usage_consumer(BUSES[id(js)], settings, "lingering", 5)
        async with running(lambda stop: consumer.run(stop, process)):
            await publish(js, settings, usage_events(3, seed=11))
            await until(lambda: _delivered_unacked(js, settings, "lingering"), what="the first message, held")
            assert calls == []  # fetched, not yet processed: the sink lingers
            for seed in range(12, 16):
                await publish(js, settings, usage_events(3, seed=seed))
            await until(lambda: calls, what="one transaction of five messages (a full batch ends the linger)")
        assert calls == [5]


async def test_a_lingering_sink_stops_at_once_and_stores_what_it_holds(nats_url: str) -> None:
    settings = msgspec.structs.replace(isolated_settings(), sink_linger_ms=10_000)
    calls, process = acking_recorder()
    async with usage_stream(nats_url, settings) as js:
        consumer = usage_consumer(BUSES[id(js)], settings, "stopping", 200)
        stop = asyncio.Event()
        task = asyncio.create_task(consumer.run(stop, process))
        await publish(js, settings, usage_events(3, seed=21))
        await until(lambda: _delivered_unacked(js, settings, "stopping"), what="the message, held")
        stop.set()
        await asyncio.wait_for(task, 5)  # not the 10 s linger
        assert calls == [1]
        await until(lambda: _acked_all(js, settings, "stopping"), what="the message acked")


async def _acked_all(js: JetStreamContext, settings: Settings, durable: str) -> bool:
    return await _delivered_unacked(js, settings, durable) == 0


class GatedTable(UsageTable):
    """The real usage table, whose first ``store`` waits for ``gate``: a transaction Postgres is slow to run.
    Records how many stores run at once."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.gate, self.first_waiting = asyncio.Event(), asyncio.Event()
        self.running, self.most_at_once, self.calls = 0, 0, 0

    async def store(self, batches: Sequence[UsageBatch]) -> set[uuid.UUID]:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.calls == 1:
                self.first_waiting.set()
                await self.gate.wait()
            return await super().store(batches)
        finally:
            self.running -= 1


async def test_the_next_fetch_is_decoded_while_a_transaction_runs_and_each_is_acked_after_its_commit(
        pool: AsyncConnectionPool, db: Database, nats_url: str) -> None:
    settings = isolated_settings()
    first, second = usage_events(40, seed=41), usage_events(60, seed=42)
    async with usage_stream(nats_url, settings) as js:
        table = GatedTable(db)
        sink = AuditSink(table, usage_consumer(BUSES[id(js)], settings, "pipelined", 1))
        await publish(js, settings, first)
        async with running(sink.run):
            await until(table.first_waiting.is_set, what="the first transaction, held")
            await publish(js, settings, second)
            # the second message is fetched while the first transaction runs, and neither is acked yet
            await until(lambda: _equals(_delivered_unacked(js, settings, "pipelined"), 2),
                        what="the second message fetched while the first transaction runs")
            assert (sink.stats.stored, table.calls) == (0, 1)  # the second waits for the first's commit
            table.gate.set()
            await until(lambda: reaches(sink, stored=100), what="both stored")
            await until(lambda: _acked_all(js, settings, "pipelined"), what="both acked")
        assert table.most_at_once == 1  # transactions never overlap: one at a time, in order
        assert await stored(pool) == {e.id: e for e in first + second}


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
