"""Replay in several folding processes against the real Postgres: the same key_cache as one process,
events committed meanwhile applied in the swap, and a failed or killed process swapping nothing in."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
from datetime import timedelta

import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.access import AccessEntry
from keyledger.domain.events import AnyEvent, KeyAccessChanged, KeyCreated, KeyRevoked, KeyRotated
from keyledger.services.cache.replay import ReplayFailed, replay
from keyledger.services.storage.checkpoints import read_checkpoint
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.key_cache_table import PROJECTOR, lock_key_cache
from keyledger.services.storage.replay_source import ReplaySource
from tests.support.factories import T0
from tests.support.pipeline import folded_streams, table_model
from tests.support.wait import until

Row = tuple[str, int, int, str]
GRANTS = [(AccessEntry(resource="global", scopes=("read:data",)),),
          (AccessEntry(resource="website", id="site-a", scopes=("read:data", "write:data")),
           AccessEntry(resource="analytics_data", scopes=("read:analytics",))),
          ()]
AWKWARD = 'a "quoted" back\\slash, tab\t, newline\n and ünïcødé'  # escaped in JSON, then again in COPY text


def stream(key_id: str, rng: random.Random, length: int) -> list[AnyEvent]:
    """A key's events: created, then changes of every kind (and sometimes a revocation last)."""
    at = T0 + timedelta(minutes=rng.randrange(10_000))
    events: list[AnyEvent] = [KeyCreated(
        key_id=key_id, at=at, name=f"key {key_id}", organization_id=rng.choice((None, "org-1")),
        access=rng.choice(GRANTS), expires_at=rng.choice((None, at + timedelta(days=30))),
        secret_hash=f"$argon2id$placeholder${rng.getrandbits(64):x}", prefix="kl", start=f"kl_{key_id}",
        rate_limit=rng.choice((None, 600)), description=rng.choice(("", "for ci")), tags=rng.choice(((), ("a",))))]
    for _ in range(length - 1):
        at += timedelta(seconds=rng.randrange(1, 5_000))
        kind = rng.randrange(5)
        if kind < 3:
            events.append(KeyAccessChanged(
                key_id=key_id, at=at, access=rng.choice((None, *GRANTS)), name=rng.choice((None, f"renamed {kind}")),
                rate_limit=rng.choice((None, 0, 1200)), description=rng.choice((None, "", AWKWARD)),
                tags=rng.choice((None, (), ("b", "c")))))
        else:
            events.append(KeyRotated(key_id=key_id, at=at, secret_hash=f"$argon2id$placeholder${rng.getrandbits(64):x}",
                                     start=f"kl_{key_id}{kind}",
                                     previous_valid_until=rng.choice((None, at + timedelta(hours=1)))))
    if rng.random() < 0.2:
        events.append(KeyRevoked(key_id=key_id, at=at + timedelta(seconds=1), reason=rng.choice(("", "leaked"))))
    return events


async def append_interleaved(store: PostgresEventStore, streams: dict[str, list[AnyEvent]]) -> None:
    """Append the streams one event of each key at a time, so every page holds events of many keys."""
    versions = {key_id: await store.stream_version(key_id) for key_id in streams}
    for index in range(max(len(events) for events in streams.values())):
        for key_id, events in streams.items():
            if index < len(events):
                await store.append(key_id, versions[key_id], [events[index]])
                versions[key_id] += 1


async def load(store: PostgresEventStore, keys: int, seed: int) -> None:
    """``keys`` keys of 1 to 8 events (sometimes one more, a revocation), interleaved."""
    rng = random.Random(seed)
    await append_interleaved(store, {f"key{seed}-{i:03d}": stream(f"key{seed}-{i:03d}", rng, rng.randint(1, 8))
                                     for i in range(keys)})


async def table_rows(pool: AsyncConnectionPool) -> list[Row]:
    """The key cache table verbatim: (key_id, version, position, state)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT key_id, version, position, state::text FROM key_cache ORDER BY key_id")
        return list(await cur.fetchall())


async def checkpoint(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        return (await read_checkpoint(conn, PROJECTOR))[0]


async def rebuild_table_exists(pool: AsyncConnectionPool) -> bool:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT to_regclass('key_cache_rebuild') IS NOT NULL")).fetchone()
        return bool(row and row[0])


async def test_processes_rebuild_the_same_table_as_one_process(db: Database, store: PostgresEventStore,
                                                               pool: AsyncConnectionPool) -> None:
    await load(store, keys=60, seed=1)
    await append_interleaved(store, {"odd\\key\tid": stream("odd\\key\tid", random.Random(0), 4)})
    head = await store.head_position()
    async with pool.connection() as conn:  # every share has keys: each process really folds some
        cur = await conn.execute("SELECT count(DISTINCT (hashtext(stream_id) & 2147483647) % 3) FROM events")
        assert (await cur.fetchone()) == (3,)
    one = await replay(ReplaySource(db), workers=1)
    in_one = await table_rows(pool)
    progress: list[tuple[int, int]] = []
    three = await replay(ReplaySource(db), workers=3, page_size=5,
                         progress=lambda done, total: progress.append((done, total)))
    assert await table_rows(pool) == in_one and len(in_one) == 61
    assert await table_model(db) == await folded_streams(store)
    assert (one.events, one.keys, one.position, one.workers) == (head, 61, head, 1)
    assert (three.events, three.keys, three.position, three.workers) == (head, 61, head, 3)
    assert progress[-1] == (head, head) and all(done <= total for done, total in progress)
    assert await checkpoint(pool) == head and not await rebuild_table_exists(pool)


async def test_events_committed_while_processes_fold_are_applied_in_the_swap(
        db: Database, store: PostgresEventStore, pool: AsyncConnectionPool) -> None:
    await load(store, keys=30, seed=2)
    rng = random.Random(3)
    async with pool.connection() as blocker, blocker.transaction():
        await lock_key_cache(blocker)  # the swap waits for the projector's lock: the folds are done by then
        running = asyncio.ensure_future(replay(ReplaySource(db), workers=2))
        await until(lambda: _waiting_for_the_key_cache_lock(pool), what="replay's swap waiting for the lock")
        late: dict[str, list[AnyEvent]] = {
            "key2-000": [KeyRevoked(key_id="key2-000", at=T0 + timedelta(days=30), reason="late")],
            "late-key": stream("late-key", rng, 3)}
        await append_interleaved(store, late)
    result = await running
    head = await store.head_position()
    assert (result.events, result.position) == (head, head)
    states = await folded_streams(store)
    assert await table_model(db) == states
    assert len(states) == 31 and states["key2-000"].revoke_reason == "late"
    assert await checkpoint(pool) == head


async def _waiting_for_the_key_cache_lock(pool: AsyncConnectionPool) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock' AND wait_event = 'advisory'")
        return (await cur.fetchone()) == (1,)


async def test_a_killed_process_fails_the_replay_and_nothing_is_swapped_in(
        db: Database, store: PostgresEventStore, pool: AsyncConnectionPool) -> None:
    await load(store, keys=20, seed=4)
    await replay(ReplaySource(db), workers=1)
    before, position = await table_rows(pool), await checkpoint(pool)
    await load(store, keys=5, seed=5)  # a replay that got through would change the table and the checkpoint
    async with pool.connection() as blocker:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # both processes wait to read
            running = asyncio.ensure_future(replay(ReplaySource(db), workers=2))
            await until(lambda: _processes_waiting_to_read(pool, 2), what="both folding processes waiting")
            victim = next(p for p in multiprocessing.active_children() if p.name == "keyledger-replay-1-of-2")
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
        with pytest.raises(ReplayFailed, match=r"keyledger-replay-1-of-2 ended \(exit code -9\)"):
            await running
    assert await table_rows(pool) == before and await checkpoint(pool) == position
    assert not await rebuild_table_exists(pool)
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("keyledger-replay-")]


async def _processes_waiting_to_read(pool: AsyncConnectionPool, count: int) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                                 "'keyledger-replay-%' AND wait_event_type = 'Lock'")
        return (await cur.fetchone()) == (count,)


async def test_a_process_that_cannot_fold_its_share_fails_the_replay(
        db: Database, store: PostgresEventStore, pool: AsyncConnectionPool) -> None:
    await load(store, keys=10, seed=6)
    await replay(ReplaySource(db), workers=1)
    before, position = await table_rows(pool), await checkpoint(pool)
    await store.append("broken", 0, [KeyRotated(key_id="broken", at=T0, secret_hash="$argon2id$placeholder",
                                                start="kl_broken")])  # a stream without its key.created
    with pytest.raises(ReplayFailed, match="failed: ValueError: KeyRotated before key.created in stream broken"):
        await replay(ReplaySource(db), workers=2)
    with pytest.raises(ValueError, match="KeyRotated before key.created"):
        await replay(ReplaySource(db), workers=1)
    assert await table_rows(pool) == before and await checkpoint(pool) == position
    assert not await rebuild_table_exists(pool)


async def test_workers_must_be_at_least_one(db: Database) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await replay(ReplaySource(db), workers=0)
