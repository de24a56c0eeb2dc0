"""``usage_grants`` (what each key was allowed to do) kept by the real audit sink over real NATS and Postgres:
every stored batch counted once, also a batch redelivered after its commit, and a batch published again;
migration 0016 fills it from the usage rows already stored; the hygiene report's reads of it and of the
store's rotations."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.events import KeyCreated, KeyRotated
from keyledger.domain.least_privilege import Use
from keyledger.domain.usage import USAGE_COLUMNS, UsageEvent, encode_batch
from keyledger.projections.usage_grants import count_grants
from keyledger.services.messaging.connection import connect
from keyledger.services.messaging.consume import Delivery
from keyledger.services.messaging.streams import ensure_usage_stream
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.migrations import available_migrations, migrate
from keyledger.services.storage.usage_grants import KeyUsage, uses_of
from keyledger.services.storage.usage_partitions import utc_day
from tests.support.pipeline import isolated_settings, running, sink_for
from tests.support.wait import until

T = datetime(2030, 3, 1, 12, tzinfo=UTC)
# The aggregate recomputed from the stored usage rows, in SQL: what the table must hold.
FROM_ROWS = """
SELECT key_id, scope, website_id, data, max(last_at), sum(count)::bigint FROM (
  SELECT key_id, scope, coalesce(website_id, '') AS website_id, coalesce(data, '') AS data, max(at) AS last_at,
         count(*) AS count
    FROM usage_events WHERE outcome = 'VALID' AND key_id IS NOT NULL AND scope IS NOT NULL GROUP BY 1, 2, 3, 4
  UNION ALL
  SELECT substr(caller, 5), 'admin:apikeys', '', '', max(at), count(*) FROM usage_events
   WHERE caller LIKE 'key:%' GROUP BY 1) AS used
 GROUP BY 1, 2, 3, 4"""


def usage_events(n: int, seed: int) -> list[UsageEvent]:
    """``n`` verifications and API calls of four keys over two days, some by an admin key as verify caller."""
    rng = random.Random(seed)
    return [UsageEvent(
        id=uuid.UUID(int=rng.getrandbits(128), version=4).hex, at=T + timedelta(seconds=rng.randrange(172_800)),
        action=rng.choice(("verify", "verify", "GET /v1/keys")), outcome=rng.choice(("VALID", "VALID", "FORBIDDEN")),
        key_id=rng.choice(("k1", "k2", "k3", "k4", None)), scope=rng.choice(("read:data", "write:data", None)),
        website_id=rng.choice(("site-a", "site-b", None)), data=rng.choice(("error_data", None)),
        caller=rng.choice(("key:admin1", "credential:c1", None))) for _ in range(n)]


Grants = dict[tuple[str, ...], tuple[datetime, int]]


async def table(pool: AsyncConnectionPool,
                query: str = "SELECT key_id, scope, website_id, data, last_at, count FROM usage_grants") -> Grants:
    async with pool.connection() as conn:
        rows = await (await conn.execute(query)).fetchall()
    return {tuple(row[:4]): (row[4], int(row[5])) for row in rows}


async def test_the_sink_counts_each_batch_once_also_when_redelivered_or_published_again(
        pool: AsyncConnectionPool, db: Database, nats_url: str) -> None:
    settings = isolated_settings()
    events = usage_events(600, seed=1)
    bus = await connect(nats_url, "test-usage-grants")
    js = bus._js
    await ensure_usage_stream(bus, settings)
    try:
        batches = [events[i:i + 100] for i in range(0, 600, 100)]
        ids = []
        for batch in batches:
            ids.append(str(uuid.uuid4()))
            await js.publish(settings.usage_subject, encode_batch(batch),
                             headers={"Nats-Msg-Id": ids[-1], "Kl-Batch-Id": ids[-1]})
        # the first two batches are committed by a sink that dies before its acks reach NATS
        subscription = await js.pull_subscribe(settings.usage_subject, durable="audit-sink",
                                               stream=settings.usage_stream, config=ConsumerConfig(
                                                   ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                                   ack_wait=30.0, max_ack_pending=20_000))
        msgs = await subscription.fetch(2, timeout=2)

        async def lost() -> None:
            """The ack never reaches NATS."""

        for msg in msgs:
            msg.ack = lost  # type: ignore[method-assign]
        crashed = sink_for(db, bus, settings)
        await crashed.commit(await crashed.accept([Delivery(msg) for msg in msgs]))
        for msg in msgs:
            await msg.nak()  # redelivered at once
        sink = sink_for(db, bus, settings)
        async with running(sink.run):
            await until(lambda: sink.stats.batches >= 4 and sink.stats.duplicates >= 2, what="the batches")
            # the third batch again, under a new message id (a re-publish after a lost publish ack)
            await js.publish(settings.usage_subject, encode_batch(batches[2]),
                             headers={"Nats-Msg-Id": str(uuid.uuid4()), "Kl-Batch-Id": ids[2]})
            await until(lambda: sink.stats.duplicates >= 3, what="the batch published again")
    finally:
        await js.delete_stream(settings.usage_stream)
        await bus.close()
    stored = await table(pool)
    assert stored == {grant: used for grant, used in count_grants(events).items()}
    assert stored == await table(pool, FROM_ROWS)  # the same as the stored rows say, each counted once
    assert stored[("admin1", "admin:apikeys", "", "")][1] == sum(e.caller == "key:admin1" for e in events)


async def test_migration_0016_counts_the_usage_rows_stored_before_it(database_url: str) -> None:
    events = usage_events(300, seed=2)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                           " applied_at timestamptz NOT NULL DEFAULT now())")
        for version, name, sql in available_migrations():
            if version < 16:
                await conn.execute(sql.encode())
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
        for day in {utc_day(event.at) for event in events}:
            await conn.execute("SELECT keyledger_ensure_usage_partition(%s)", (day,))
        columns = [c for c in USAGE_COLUMNS if c != "credits_spent"]  # added by 0017, after the one tested
        async with conn.cursor().copy(f"COPY usage_events ({', '.join(columns)}) FROM STDIN") as copy:
            for event in events:
                await copy.write_row(tuple(getattr(event, column) for column in columns))
    assert "0016_usage_grants.sql" in await migrate(database_url)
    async with AsyncConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True}) as pool:
        assert await table(pool) == count_grants(events)


async def test_the_report_reads_uses_since_a_time_and_the_last_rotation(pool: AsyncConnectionPool, db: Database,
                                                                         store: PostgresEventStore) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO usage_grants (key_id, scope, website_id, data, last_at, count) VALUES "
            "('k1', 'read:data', 'site-a', '', %(t)s, 5), ('k1', 'write:data', '', '', %(old)s, 1), "
            "('k1', 'read:analytics', '', 'error_data', %(t)s, 2), ('k2', 'read:data', '', '', %(t)s, 1)",
            {"t": T, "old": T - timedelta(days=40)})
        await conn.execute("INSERT INTO key_last_used VALUES ('k1', %s), ('k3', %s)",
                           (T + timedelta(hours=1), T - timedelta(days=60)))
    for key_id in ("k1", "k2"):
        await store.append(key_id, 0, [KeyCreated(key_id=key_id, at=T - timedelta(days=100), name=key_id,
                                                  secret_hash="$argon2id$placeholder", prefix="kl",
                                                  start=f"kl_{key_id}")])
    await store.append("k1", 1, [KeyRotated(key_id="k1", at=T - timedelta(days=50), secret_hash="$argon2id$x",
                                            start="kl_k1x")])
    await store.append("k1", 2, [KeyRotated(key_id="k1", at=T - timedelta(days=5), secret_hash="$argon2id$y",
                                            start="kl_k1y")])
    for some in (["k1", "k3"], ["k1", "k3", *(f"x{n}" for n in range(5_000))]):  # a few keys asked, and many
        used = {key: (uses, last) for key, uses, last in await KeyUsage(db).read(some, T - timedelta(days=30))}
        assert {key: (set(uses_of(uses or "")), last) for key, (uses, last) in used.items() if key in some} == {
            "k1": ({Use("read:data", "site-a"), Use("read:analytics", None, "error_data")}, T + timedelta(hours=1)),
            "k3": (set(), T - timedelta(days=60))}  # used long ago only: its last use, no uses
        assert await KeyUsage(db).rotations(some) == {"k1": T - timedelta(days=5)}
    assert await KeyUsage(db).rotations(None) == {"k1": T - timedelta(days=5)}
    async with pool.connection() as conn:  # the same uses written in another order read as the same text
        await conn.execute("DELETE FROM usage_grants WHERE key_id = 'k1' AND scope = 'read:data'")
        await conn.execute("INSERT INTO usage_grants VALUES ('k1', 'read:data', 'site-a', '', %s, 5)", (T,))
    assert (await KeyUsage(db).read(["k1"], T - timedelta(days=30))) == [("k1", used["k1"][0], T + timedelta(hours=1))]
