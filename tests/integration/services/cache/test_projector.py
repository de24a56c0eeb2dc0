"""Relay → JetStream → projector and live cache, and replay, against the real servers."""

from __future__ import annotations

import random

from keyledger.domain.access import AccessEntry
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.cache.replay import replay
from keyledger.services.hashing import SecretHasher
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.replay_source import ReplaySource
from tests.support.pipeline import (
    folded_streams,
    isolated_settings,
    jetstream,
    live_cache_for,
    projector_caught_up,
    projector_for,
    relay_for,
    running,
    table_model,
)
from tests.support.wait import until

READ = (AccessEntry(resource="global", scopes=("read:data",)),)


async def test_events_flow_to_the_table_and_the_live_cache(db: Database, store: PostgresEventStore,
                                                           nats_url: str) -> None:
    settings = isolated_settings()
    keys = KeyService(store, SecretHasher(settings), random_bytes=random.Random(1).randbytes)
    async with jetstream(nats_url, settings) as (bus, js):
        relay, projector = relay_for(db, bus, settings), projector_for(db, bus, settings)
        async with running(relay.run, projector.run):
            issued = [await keys.create(f"k{i}", access=READ) for i in range(5)]
            await keys.rotate(issued[0].state.key_id, grace_seconds=60)
            await until(lambda: projector_caught_up(db), what="projector")
            cache = live_cache_for(db, bus, settings)
            await cache.start()
            assert cache.position == await store.head_position() and len(cache) == 5
            revoked = await keys.revoke(issued[1].state.key_id)
            async def seen() -> bool:
                state = cache.get(issued[1].state.key_id)
                return state is not None and state.revoked_at is not None
            await until(seen, what="revoke in the live cache")
            await until(lambda: projector_caught_up(db), what="projector")
            await cache.stop()
        assert await table_model(db) == await folded_streams(store)
        assert cache.get(revoked.key_id) == revoked
        assert relay.published == 7 and projector.stats.applied == 7 and projector.stats.duplicates == 0


async def test_replay_rebuilds_the_same_table(db: Database, store: PostgresEventStore) -> None:
    settings = isolated_settings()
    keys = KeyService(store, SecretHasher(settings), random_bytes=random.Random(2).randbytes)
    ids = [(await keys.create(f"k{i}", access=READ)).state.key_id for i in range(20)]
    for key_id in ids[:10]:
        await keys.change_access(key_id, name="renamed")
    for key_id in ids[::3]:
        await keys.revoke(key_id)
    progress: list[tuple[int, int]] = []
    result = await replay(ReplaySource(db), progress=lambda done, total: progress.append((done, total)), page_size=7,
                          workers=1)
    head = await store.head_position()
    assert (result.events, result.keys, result.position) == (head, 20, head)
    assert progress[-1] == (head, head) and len(progress) == -(-head // 7)
    assert await table_model(db) == await folded_streams(store)
    await replay(ReplaySource(db))  # again: the swap is repeatable
    assert await table_model(db) == await folded_streams(store)


async def test_live_cache_follows_a_recreated_stream_from_its_start(db: Database, store: PostgresEventStore,
                                                                   nats_url: str) -> None:
    settings = isolated_settings()
    keys = KeyService(store, SecretHasher(settings), random_bytes=random.Random(5).randbytes)
    async with jetstream(nats_url, settings) as (bus, js):
        relay, projector = relay_for(db, bus, settings), projector_for(db, bus, settings)
        async with running(relay.run, projector.run):
            for i in range(6):
                await keys.create(f"k{i}", access=READ)
            await until(lambda: projector_caught_up(db), what="projector")
        await js.delete_stream(settings.nats_stream)  # the NATS store is lost; the checkpoint says seq 6
        async with running(relay.run, projector.run):
            await keys.create("after the loss", access=READ)
            await until(lambda: projector_caught_up(db), what="projector on the new stream")
            cache = live_cache_for(db, bus, settings)
            await cache.start()
            fresh = await keys.create("while following", access=READ)
            await until(lambda: _has(cache, fresh.state.key_id), what="the new key in the live cache")
            await cache.stop()
        assert await table_model(db) == await folded_streams(store)


async def _has(cache: LiveKeyCache, key_id: str) -> bool:
    return cache.get(key_id) is not None
