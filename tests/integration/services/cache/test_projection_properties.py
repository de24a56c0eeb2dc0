"""Property: for random command sequences, live projection == replay (in one process and in two) ==
folding each stream."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import DomainError
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.cache.replay import replay
from keyledger.services.hashing import SecretHasher
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.database import open_database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.migrations import migrate
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

ACCESS = [
    (AccessEntry(resource="global", scopes=("read:data",)),),
    (AccessEntry(resource="website", id="site-a", scopes=("read:data", "write:data")),),
    (AccessEntry(resource="analytics_data", scopes=("read:analytics",)),
     AccessEntry(resource="global", scopes=("rate:premium",))),
    (),
]
KEYS = 6
operation = st.one_of(
    st.tuples(st.just("create"), st.integers(0, KEYS - 1), st.integers(0, len(ACCESS) - 1)),
    st.tuples(st.just("change"), st.integers(0, KEYS - 1), st.integers(0, len(ACCESS) - 1)),
    st.tuples(st.just("rename"), st.integers(0, KEYS - 1), st.integers(0, 99)),
    st.tuples(st.just("rotate"), st.integers(0, KEYS - 1), st.sampled_from([0, 60, 7 * 86400, 8 * 86400])),
    st.tuples(st.just("revoke"), st.integers(0, KEYS - 1), st.integers(0, 1)),
)


async def run_commands(keys: KeyService, ops: list[tuple[str, int, int]]) -> None:
    """Apply the operations; refusals (revoked, out-of-range grace...) are part of the test."""
    slots: dict[int, str] = {}
    for kind, slot, arg in ops:
        try:
            if kind == "create":
                slots.setdefault(slot, (await keys.create(f"key {slot}", access=ACCESS[arg])).state.key_id)
            elif slot not in slots:
                continue
            elif kind == "change":
                await keys.change_access(slots[slot], access=ACCESS[arg])
            elif kind == "rename":
                await keys.change_access(slots[slot], name=f"renamed {arg}")
            elif kind == "rotate":
                await keys.rotate(slots[slot], grace_seconds=arg)
            else:
                await keys.revoke(slots[slot], reason="test" if arg else "")
        except DomainError:
            pass


async def scenario(admin_url: str, nats_url: str, ops: list[tuple[str, int, int]], seed: int) -> None:
    name = f"kl_prop_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    try:
        await migrate(url)
        cfg = isolated_settings()
        async with open_database(url, min_size=2, max_size=6) as db, jetstream(nats_url, cfg) as (bus, _):
            store = PostgresEventStore(db)
            clock = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(10_000))
            keys = KeyService(store, SecretHasher(cfg), random_bytes=random.Random(seed).randbytes,
                              clock=lambda: next(clock))
            live = live_cache_for(db, bus, cfg)
            await live.start()
            relay, projector = relay_for(db, bus, cfg, page_size=7), projector_for(db, bus, cfg, batch_size=5)
            async with running(relay.run, projector.run):
                await run_commands(keys, ops)
                await until(lambda: projector_caught_up(db), what="projector")
                head = await store.head_position()
                await until(lambda: _at(live, head), what="the live cache at the head")
            await live.stop()
            expected = await folded_streams(store)
            projected = await table_model(db)
            await replay(ReplaySource(db), page_size=3, workers=1)
            replayed = await table_model(db)
            await replay(ReplaySource(db), page_size=3, workers=2)
            replayed_in_processes = await table_model(db)
            live_model = {key_id: live.get(key_id) for key_id in expected}
            assert projected == expected
            assert replayed == expected
            assert replayed_in_processes == expected
            assert live_model == expected and len(live) == len(expected)
            assert projector.stats.applied == head
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _at(live: LiveKeyCache, position: int) -> bool:
    return live.position >= position


@pytest.mark.timeout(600)  # 25 examples, each a fresh database and pipeline: minutes on a busy machine
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=1, max_size=40), seed=st.integers(0, 2**32 - 1))
def test_live_projection_equals_replay_equals_fold(servers: tuple[str, str], ops: list[tuple[str, int, int]],
                                                   seed: int) -> None:
    asyncio.run(scenario(servers[0], servers[1], ops, seed))
