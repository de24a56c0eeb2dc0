"""Whoever can publish on the key-event subjects cannot change any key: messages are only
notifications, and what the live cache and the projector apply is what the store holds."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from keyledger.domain.access import AccessEntry
from keyledger.domain.events import KeyAccessChanged, KeyRotated
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.hashing import SecretHasher
from keyledger.services.keys.service import KeyService
from keyledger.services.messaging.streams import encode_message, subject_for
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import PostgresEventStore
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
GOD = (AccessEntry(resource="global", scopes=("admin:apikeys", "read:data", "write:custom-sql")),)


async def test_a_forged_event_changes_no_state_and_the_real_one_still_applies(
        db: Database, store: PostgresEventStore, nats_url: str) -> None:
    settings = isolated_settings()
    keys = KeyService(store, SecretHasher(settings), random_bytes=random.Random(11).randbytes)
    async with jetstream(nats_url, settings) as (bus, js):
        relay, projector = relay_for(db, bus, settings), projector_for(db, bus, settings)
        cache = live_cache_for(db, bus, settings)
        await cache.start()
        async with running(relay.run, projector.run):
            victim = (await keys.create("victim", access=READ)).state
            await until(lambda: projector_caught_up(db), what="the projector")
            await until(lambda: _version(cache.get(victim.key_id)) == 1, what="the live cache")
            head = await store.head_position()
            at = victim.created_at + timedelta(seconds=1)
            for forged_event in (KeyAccessChanged(key_id=victim.key_id, at=at, access=GOD),  # grant admin
                                 KeyRotated(key_id=victim.key_id, at=at, secret_hash="$argon2id$attacker",
                                            start=victim.start)):  # or replace its hash
                forged = RecordedEvent(global_position=head + 1, event_id=uuid.uuid4(), stream_id=victim.key_id,
                                       version=2, type="forged", event=forged_event, metadata=Metadata(),
                                       recorded_at=at)
                await js.publish(subject_for(settings, victim.key_id), encode_message(forged),
                                 headers={"Nats-Msg-Id": str(forged.event_id)})
            await until(lambda: _at_least(cache.forged, 2), what="the live cache to see both forgeries")
            await until(lambda: _at_least(projector.stats.forged, 2), what="the projector to see both forgeries")
            assert cache.get(victim.key_id) == victim  # no scope granted, no hash replaced
            assert (await table_model(db))[victim.key_id] == victim
            revoked = await keys.revoke(victim.key_id, reason="the real version 2")
            await until(lambda: _version(cache.get(victim.key_id)) == 2, what="the real revoke in the live cache")
            await until(lambda: projector_caught_up(db), what="the projector")
        await cache.stop()
    assert cache.get(victim.key_id) == revoked and revoked.revoked_at is not None
    assert await table_model(db) == await folded_streams(store)


def _version(state: object) -> int:
    return int(getattr(state, "version", 0))


def _at_least(value: int, wanted: int) -> bool:
    return value >= wanted
