"""The watch against the real Postgres and NATS: a batch applied twice counts once (claimed in the transaction
that applies it), a finding's notice goes out once per severity, a wrong secret counts only for a key that
exists, a batch re-sent through JetStream is skipped, and a rebuild from the usage table gives the same
findings (keeping acknowledgements) and leaves the live watch skipping what it covered."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.findings import Finding, Thresholds, finding_id
from keyledger.domain.key import KeyState, fold
from keyledger.domain.usage import UsageEvent, encode_batch
from keyledger.services.keys.views import key_view
from keyledger.services.messaging.connection import connect
from keyledger.services.messaging.consume import Consumer, Delivery
from keyledger.services.messaging.streams import ensure_usage_stream
from keyledger.services.messaging.usage import usage_consumer
from keyledger.services.storage.database import Database
from keyledger.services.storage.findings import FindingFilter, FindingTable
from keyledger.services.storage.key_cache_table import upsert_keys
from keyledger.services.storage.usage_table import UsageBatch, UsageTable
from keyledger.services.storage.watch_store import WatchStore
from keyledger.services.watch.rebuild import rebuild
from keyledger.services.watch.watcher import Batch, Watch
from tests.support.factories import created
from tests.support.pipeline import isolated_settings, running
from tests.support.wait import until

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEY, OTHER, UNKNOWN = "AbCdEfGh1234", "ZyXwVuTs9876", "NoSuchKey000"
_ids = itertools.count()


class Settled:
    """A message settled by hand (the watch acks after its commit)."""

    def __init__(self) -> None:
        self.acked = 0

    async def ack(self) -> None:
        self.acked += 1

    async def term(self) -> None:
        raise AssertionError("no message here is malformed")


def use(key_id: str, outcome: str, at: datetime, ip: str = "198.51.100.7") -> UsageEvent:
    return UsageEvent(id=f"{next(_ids):032x}", at=at, action="verify", outcome=outcome, key_id=key_id,
                      start=f"kl_{key_id}abcd", organization_id="org-a", scope="read:data", ip=ip)


def wrong(key_id: str, at: datetime) -> UsageEvent:
    return UsageEvent(id=f"{next(_ids):032x}", at=at, action="verify", outcome="NOT_FOUND",
                      start=f"kl_{key_id}Qz1x", reason="unknown key", ip="203.0.113.9")


def batch(events: list[UsageEvent], batch_id: uuid.UUID | None = None) -> Batch:
    return Batch(batch_id or uuid.uuid4(), events, [cast(Delivery, Settled())])


@pytest.fixture
async def keys(pool: AsyncConnectionPool) -> dict[str, KeyState]:
    """KEY and OTHER in the key cache table, of organization org-a (as the projector writes them)."""
    states = {}
    for key_id in (KEY, OTHER):
        state = fold([created(key_id)])
        assert state is not None
        states[key_id] = msgspec.structs.replace(state, organization_id="org-a")
    async with pool.connection() as conn:
        await upsert_keys(conn, [(state, 1) for state in states.values()])
    return states


def watch_on(db: Database, limits: Thresholds | None = None, consumer: Consumer | None = None) -> Watch:
    return Watch(WatchStore(db), FindingTable(db), cast(Consumer, consumer), limits or Thresholds(), key_view)


async def all_findings(db: Database) -> dict[tuple[str, str, str], Finding]:
    items, _ = await FindingTable(db).page(FindingFilter(), 100, None)
    return {(f.kind, f.key_id, f.subject): f for f in items}


async def notices(pool: AsyncConnectionPool) -> list[tuple[str, str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT message_id, type, data FROM webhook_messages ORDER BY position")
        return [(row[0], row[1], row[2]) for row in await cur.fetchall()]


GUESSES = [wrong(KEY, T0 + timedelta(seconds=20 * i)) for i in range(10)]
REVOKED = [use(KEY, "REVOKED", T0 + timedelta(minutes=4)), use(KEY, "REVOKED", T0 + timedelta(minutes=5))]


async def test_a_batch_applied_twice_counts_once(db: Database, pool: AsyncConnectionPool,
                                                 keys: dict[str, KeyState]) -> None:
    watch = watch_on(db)
    first = batch([*GUESSES, *REVOKED, *[wrong(UNKNOWN, T0 + timedelta(seconds=i)) for i in range(12)]])
    await watch.commit([first])
    again = Batch(first.batch_id, first.events, [cast(Delivery, Settled())])
    await watch.commit([again])  # e.g. redelivered after a lost ack
    found = await all_findings(db)
    assert {key: f.count for key, f in found.items()} == {
        ("secret_guessing", KEY, ""): 1, ("revoked_key_used", KEY, "revoked"): 2}  # nothing for UNKNOWN
    assert (watch.stats.batches, watch.stats.duplicates, watch.stats.events) == (1, 1, 24)
    assert [cast(Settled, d).acked for d in (*first.deliveries, *again.deliveries)] == [1, 1]  # both acked
    guessing = found[("secret_guessing", KEY, "")]
    assert (guessing.organization_id, guessing.severity, guessing.first_seen) == ("org-a", "medium", GUESSES[-1].at)
    sent = await notices(pool)
    assert [(message_id, kind) for message_id, kind, _ in sent] == [
        (f"finding:{guessing.id}:medium", "key.finding"),
        (f"finding:{finding_id('revoked_key_used', KEY, 'revoked')}:high", "key.finding")]
    data = sent[1][2]
    assert data["finding"]["count"] == 2 and data["finding"]["evidence"]["ip"] == "198.51.100.7"
    assert data["key"] == msgspec.to_builtins(key_view(keys[KEY], REVOKED[-1].at))
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT key_id FROM watch_profiles ORDER BY key_id")
        assert [row[0] for row in await cur.fetchall()] == [KEY]  # no profile for a key that does not exist


async def test_a_change_of_severity_is_noticed_again(db: Database, pool: AsyncConnectionPool,
                                                    keys: dict[str, KeyState]) -> None:
    watch = watch_on(db, Thresholds(escalate_after=3))
    await watch.commit([batch(GUESSES)])
    await watch.commit([batch([wrong(KEY, T0 + timedelta(seconds=190))])])  # count 2: no notice
    await watch.commit([batch([wrong(KEY, T0 + timedelta(seconds=195))])])  # count 3: high
    found = finding_id("secret_guessing", KEY, "")
    assert [message_id for message_id, _, _ in await notices(pool)] == [f"finding:{found}:medium",
                                                                        f"finding:{found}:high"]
    assert (await all_findings(db))[("secret_guessing", KEY, "")].count == 3


async def test_a_batch_sent_again_through_jetstream_is_skipped(db: Database, nats_url: str,
                                                               keys: dict[str, KeyState]) -> None:
    settings = isolated_settings()
    bus = await connect(nats_url, "test-watch")
    try:
        await ensure_usage_stream(bus, settings)

        async def publish(events: list[UsageEvent], batch_id: uuid.UUID) -> None:
            await bus._js.publish(settings.usage_subject, encode_batch(events),
                                  headers={"Nats-Msg-Id": uuid.uuid4().hex, "Kl-Batch-Id": str(batch_id)})

        watch = watch_on(db, consumer=usage_consumer(bus, settings, "watch", 50))
        async with running(watch.run):
            guesses = uuid.uuid4()
            await publish(GUESSES, guesses)
            await until(lambda: watch.stats.batches == 1, timeout=15, what="the first batch applied")
            await publish(GUESSES, guesses)  # the same batch once more (e.g. re-sent from a spool)
            await publish([use(OTHER, "EXPIRED", T0)], uuid.uuid4())  # and then a new one
            await until(lambda: watch.stats.batches == 2, timeout=15, what="the second batch applied")
        assert watch.stats.duplicates == 1
        found = await all_findings(db)
        assert found[("secret_guessing", KEY, "")].count == 1 and found[("revoked_key_used", OTHER, "expired")]
    finally:
        await bus._js.delete_stream(settings.usage_stream)
        await bus.close()


@pytest.fixture
async def stored(db: Database) -> AsyncIterator[list[UsageBatch]]:
    """Usage of KEY and OTHER over two days as the audit sink stores it (usage_events, usage_batches)."""
    spread = [use(OTHER, "VALID", T0 + timedelta(hours=h), ip=f"10.0.{h % 3}.1") for h in range(30)]
    burst = [use(OTHER, "VALID", T0 + timedelta(hours=30, seconds=i), ip=f"192.0.{i}.1") for i in range(25)]
    batches = [UsageBatch(uuid.uuid4(), events) for events in (GUESSES, REVOKED, spread, burst)]
    assert await UsageTable(db).store(batches) == {b.batch_id for b in batches}
    yield batches


async def test_a_rebuild_gives_the_same_findings_and_keeps_acknowledgements(
        db: Database, pool: AsyncConnectionPool, keys: dict[str, KeyState], stored: list[UsageBatch]) -> None:
    watch = watch_on(db)
    for usage in stored:  # the live watch, batch by batch
        await watch.commit([batch(usage.events, usage.batch_id)])
    live = await all_findings(db)
    assert {kind for kind, _, _ in live} == {"secret_guessing", "revoked_key_used", "many_networks", "new_network",
                                             "volume_spike"}
    acked = live[("revoked_key_used", KEY, "revoked")]
    assert await FindingTable(db).acknowledge(acked.id, T0 + timedelta(days=1), "key:admin") is not None
    live = await all_findings(db)
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM findings WHERE kind <> 'revoked_key_used'")  # lost: derived data
        await conn.execute("UPDATE findings SET count = 99")
    done = await rebuild(WatchStore(db), Thresholds())
    assert (done.events, done.keys, done.findings) == (sum(len(b.events) for b in stored), 2, len(live))
    assert await all_findings(db) == live  # the same ids, counts and times; the acknowledgement kept
    late = UsageBatch(uuid.uuid4(), [use(KEY, "REVOKED", T0 + timedelta(minutes=6))])  # stored, not yet watched
    assert await UsageTable(db).store([late]) == {late.batch_id}
    before = await notices(pool)
    await rebuild(WatchStore(db), Thresholds())
    assert (await all_findings(db))[("revoked_key_used", KEY, "revoked")].count == 3
    for usage in [*stored, late]:  # the live watch sees them now: covered by the rebuild, skipped
        await watch.commit([batch(usage.events, usage.batch_id)])
    rebuilt = await all_findings(db)
    assert rebuilt[("revoked_key_used", KEY, "revoked")].count == 3 and await notices(pool) == before
    await watch.commit([batch([wrong(KEY, T0 + timedelta(seconds=200))])])  # on from the rebuilt profile
    assert (await all_findings(db))[("secret_guessing", KEY, "")].count == live[("secret_guessing", KEY, "")].count + 1
