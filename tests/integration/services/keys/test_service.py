"""Command handlers over the real event store: secrets, hashing, metadata and conflicts."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from keyledger.domain import token
from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import ConcurrencyError, KeyNotFound, KeyRevokedError, ValidationError
from keyledger.domain.recorded import Metadata
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.event_store import PostgresEventStore
from tests.support.hashing import CountingHasher

NOW = datetime(2026, 3, 1, tzinfo=UTC)
META = Metadata(actor="key:admin0000001", ip="198.51.100.7", user_agent="pytest", request_id="r-1")
GLOBAL_READ = (AccessEntry(resource="global", scopes=("read:data",)),)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def keys(store: PostgresEventStore, hasher: CountingHasher) -> KeyService:
    return KeyService(store, hasher, prefix="kl", random_bytes=random.Random(7).randbytes, clock=lambda: NOW)


async def test_create_stores_only_the_hash_and_returns_the_secret_once(
        keys: KeyService, store: PostgresEventStore, hasher: CountingHasher) -> None:
    issued = await keys.create("ingest", organization_id="org-1", access=GLOBAL_READ, metadata=META)
    parsed = token.parse(issued.token)
    assert parsed.key_id == issued.state.key_id and issued.state.start == parsed.start()
    assert issued.token not in repr(issued) and issued.token not in str(issued)
    (recorded,) = await store.read_stream(parsed.key_id)
    assert recorded.metadata == META and recorded.type == "key.created"
    assert await hasher.verify(issued.state.secret_hash, issued.token)
    assert not await hasher.verify(issued.state.secret_hash, issued.token[:-1] + "0")
    assert parsed.secret not in repr(recorded)


async def test_invalid_create_costs_no_hash_and_writes_nothing(
        keys: KeyService, store: PostgresEventStore, hasher: CountingHasher) -> None:
    with pytest.raises(ValidationError):
        await keys.create("x", access=(AccessEntry(resource="global", scopes=("read:all",)),))
    with pytest.raises(ValidationError):
        await keys.create("x", expires_at=NOW - timedelta(days=1))
    assert hasher.hashed == 0 and await store.head_position() == 0


async def test_rotate_keeps_the_id_and_grants_grace(keys: KeyService, hasher: CountingHasher) -> None:
    issued = await keys.create("svc", access=GLOBAL_READ)
    rotated = await keys.rotate(issued.state.key_id, grace_seconds=600, metadata=META)
    assert token.parse(rotated.token).key_id == issued.state.key_id and rotated.token != issued.token
    state = rotated.state
    assert await hasher.verify(state.secret_hash, rotated.token)
    assert state.previous_hash is not None and await hasher.verify(state.previous_hash, issued.token)
    assert state.previous_valid_until == NOW + timedelta(minutes=10)


async def test_revoked_key_refuses_everything_without_hashing(keys: KeyService, hasher: CountingHasher) -> None:
    key_id = (await keys.create("svc", access=GLOBAL_READ)).state.key_id
    await keys.revoke(key_id, reason="leaked", metadata=META)
    hashed = hasher.hashed
    for attempt in (keys.rotate(key_id), keys.revoke(key_id), keys.change_access(key_id, name="again")):
        with pytest.raises(KeyRevokedError):
            await attempt
    assert hasher.hashed == hashed
    state, events = await keys.history(key_id)
    assert state.revoked_at == NOW and [e.type for e in events] == ["key.created", "key.revoked"]


async def test_stale_expected_version_is_a_conflict(keys: KeyService) -> None:
    key_id = (await keys.create("svc", access=GLOBAL_READ)).state.key_id
    await keys.change_access(key_id, name="renamed", expected_version=1)
    with pytest.raises(ConcurrencyError, match="at version 2, expected 1"):
        await keys.change_access(key_id, name="lost update", expected_version=1)
    state, _ = await keys.history(key_id)
    assert state.name == "renamed"


async def test_concurrent_commands_one_wins_the_rest_conflict(keys: KeyService) -> None:
    key_id = (await keys.create("svc", access=GLOBAL_READ)).state.key_id
    results = await asyncio.gather(
        *(keys.change_access(key_id, name=f"writer {i}") for i in range(6)), keys.revoke(key_id),
        return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) >= 1
    assert all(isinstance(r, (ConcurrencyError, KeyRevokedError)) for r in results if isinstance(r, BaseException))
    state, events = await keys.history(key_id)
    assert state.version == len(events) == 1 + len(winners)


async def test_unknown_and_malformed_ids_are_not_found(keys: KeyService) -> None:
    for key_id in ("AAAAAAAAAAAA", "'; drop table events; --", ""):
        with pytest.raises(KeyNotFound):
            await keys.history(key_id)
