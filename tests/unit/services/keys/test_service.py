"""Command handlers on the in-memory store: given these events, when this command, then these events."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest

from keyledger.domain import token
from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import Busy, ConcurrencyError, KeyNotFound, KeyRevokedError, ValidationError
from keyledger.domain.events import Event, KeyAccessChanged, KeyCreated, KeyRevoked, KeyRotated, encode_event
from keyledger.domain.recorded import Metadata
from keyledger.services.hashing import Argon2Queue
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.memory import InMemoryEventStore
from tests.support.clock import SettableClock
from tests.support.factories import T0, changes, created
from tests.support.hashing import CountingHasher

NOW = T0 + timedelta(days=1)
KEY = "K3yId0000001"
META = Metadata(actor="key:admin0000001", ip="198.51.100.7", user_agent="pytest", request_id="r-1")
GLOBAL_READ = (AccessEntry(resource="global", scopes=("read:data",)),)
WEBSITE_B = (AccessEntry(resource="website", id="site-b", scopes=("read:data", "read:analytics")),)
REVOKED = KeyRevoked(key_id=KEY, at=T0 + timedelta(hours=1), reason="leaked")




@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(NOW)


@pytest.fixture
def store(clock: SettableClock) -> InMemoryEventStore:
    return InMemoryEventStore(clock)


@pytest.fixture
def hasher() -> Iterator[CountingHasher]:
    hasher = CountingHasher()
    yield hasher
    hasher.close()


@pytest.fixture
def keys(store: InMemoryEventStore, hasher: CountingHasher, clock: SettableClock) -> KeyService:
    return KeyService(store, hasher, prefix="kl", random_bytes=random.Random(7).randbytes, clock=clock)


async def given(store: InMemoryEventStore, *events: Event) -> None:
    """Put ``events`` into KEY's stream."""
    await store.append(KEY, 0, events)


async def events_after(store: InMemoryEventStore, version: int, key_id: str = KEY) -> list[Event]:
    """The events of ``key_id`` after ``version``: what the command under test appended."""
    return [recorded.event for recorded in await store.read_stream(key_id, after_version=version)]


# create

async def test_create_records_the_hash_and_returns_the_secret(keys: KeyService, store: InMemoryEventStore,
                                                              hasher: CountingHasher) -> None:
    issued = await keys.create("ingest", organization_id="org-1", access=GLOBAL_READ, metadata=META)
    parsed = token.parse(issued.token)
    (recorded,) = await store.read_stream(parsed.key_id)
    assert recorded.event == KeyCreated(key_id=parsed.key_id, at=NOW, name="ingest", organization_id="org-1",
                                        access=GLOBAL_READ, secret_hash=issued.state.secret_hash, prefix="kl",
                                        start=parsed.start())
    assert recorded.metadata == META
    assert await hasher.verify(recorded.event.secret_hash, issued.token)


async def test_the_secret_exists_only_in_the_issued_key(keys: KeyService, store: InMemoryEventStore) -> None:
    issued = await keys.create("ingest", access=GLOBAL_READ)
    assert issued.token == token.generate(random.Random(7).randbytes, "kl")  # the injected random source
    secret = token.parse(issued.token).secret
    (recorded,) = await store.read_stream(issued.state.key_id)
    assert secret not in encode_event(recorded.event).decode()
    assert secret not in msgspec.json.encode(issued.state).decode()
    assert secret not in repr(issued) and secret not in str(issued)


@pytest.mark.parametrize("kwargs", [
    {"name": "  "},
    {"name": "ok", "access": (AccessEntry(resource="global", scopes=("read:all",)),)},
    {"name": "ok", "access": (AccessEntry(resource="website", scopes=("read:data",)),)},
    {"name": "ok", "expires_at": NOW},
    {"name": "ok", "expires_at": datetime(2030, 1, 1)},
    {"name": "ok", "rate_limit": 0},
], ids=["blank name", "unknown scope", "website without id", "expires now", "naive expiry", "zero rate limit"])
async def test_an_invalid_create_changes_nothing(keys: KeyService, store: InMemoryEventStore,
                                                 hasher: CountingHasher, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        await keys.create(**kwargs)
    assert await store.head_position() == 0 and hasher.hashed == 0


# change_access

async def test_change_access_records_the_change(keys: KeyService, store: InMemoryEventStore) -> None:
    await given(store, created(KEY))
    state = await keys.change_access(KEY, access=WEBSITE_B, name="renamed", rate_limit=50, expected_version=1)
    assert await events_after(store, 1) == [
        KeyAccessChanged(key_id=KEY, at=NOW, access=WEBSITE_B, name="renamed", rate_limit=50)]
    assert (state.version, state.access, state.name, state.rate_limit) == (2, WEBSITE_B, "renamed", 50)


async def test_a_stale_expected_version_is_a_conflict(keys: KeyService, store: InMemoryEventStore) -> None:
    await given(store, created(KEY), *changes(KEY, 1))
    with pytest.raises(ConcurrencyError, match="at version 2, expected 1"):
        await keys.change_access(KEY, name="lost update", expected_version=1)
    assert await events_after(store, 2) == []


async def test_a_change_of_nothing_is_refused(keys: KeyService, store: InMemoryEventStore) -> None:
    await given(store, created(KEY))
    with pytest.raises(ValidationError, match="nothing to change"):
        await keys.change_access(KEY)
    assert await events_after(store, 1) == []


async def test_a_revoked_key_refuses_changes(keys: KeyService, store: InMemoryEventStore) -> None:
    await given(store, created(KEY), REVOKED)
    with pytest.raises(KeyRevokedError):
        await keys.change_access(KEY, access=WEBSITE_B)
    assert await events_after(store, 2) == []


# rotate

async def test_rotate_keeps_the_id_and_records_the_new_hash(keys: KeyService, store: InMemoryEventStore,
                                                            hasher: CountingHasher) -> None:
    await given(store, created(KEY))
    rotated = await keys.rotate(KEY, grace_seconds=600)
    parsed = token.parse(rotated.token)
    assert parsed.key_id == KEY
    assert await events_after(store, 1) == [
        KeyRotated(key_id=KEY, at=NOW, secret_hash=rotated.state.secret_hash, start=parsed.start(),
                   previous_valid_until=NOW + timedelta(seconds=600))]
    assert await hasher.verify(rotated.state.secret_hash, rotated.token)


async def test_the_old_secret_works_until_the_grace_ends(keys: KeyService, hasher: CountingHasher,
                                                         clock: SettableClock) -> None:
    issued = await keys.create("svc", access=GLOBAL_READ)
    state = (await keys.rotate(issued.state.key_id, grace_seconds=600)).state
    assert state.previous_hash == issued.state.secret_hash
    assert await hasher.verify(state.previous_hash, issued.token)
    clock.advance(timedelta(seconds=599))
    assert state.previous_secret_valid(clock())
    clock.advance(timedelta(seconds=1))
    assert not state.previous_secret_valid(clock())


async def test_rotate_without_grace_drops_the_old_secret_at_once(keys: KeyService, store: InMemoryEventStore) -> None:
    await given(store, created(KEY))
    state = (await keys.rotate(KEY)).state
    assert (state.previous_hash, state.previous_valid_until) == (None, None)
    assert not state.previous_secret_valid(NOW)


async def test_a_second_rotation_ends_the_first_grace(keys: KeyService, store: InMemoryEventStore,
                                                      clock: SettableClock) -> None:
    await given(store, created(KEY))
    first = (await keys.rotate(KEY, grace_seconds=600)).state
    clock.advance(timedelta(seconds=10))
    second = (await keys.rotate(KEY, grace_seconds=60)).state
    assert second.previous_hash == first.secret_hash  # the original secret is gone
    assert second.previous_valid_until == clock() + timedelta(seconds=60)


@pytest.mark.parametrize("grace", [-1, 7 * 24 * 3600 + 1])
async def test_a_grace_outside_seven_days_is_refused(keys: KeyService, store: InMemoryEventStore,
                                                     hasher: CountingHasher, grace: int) -> None:
    await given(store, created(KEY))
    with pytest.raises(ValidationError, match="grace period"):
        await keys.rotate(KEY, grace_seconds=grace)
    assert await events_after(store, 1) == [] and hasher.hashed == 0


async def test_a_revoked_key_is_not_rotated_nor_hashed_for(keys: KeyService, store: InMemoryEventStore,
                                                           hasher: CountingHasher) -> None:
    await given(store, created(KEY), REVOKED)
    with pytest.raises(KeyRevokedError):
        await keys.rotate(KEY, grace_seconds=60)
    assert await events_after(store, 2) == [] and hasher.hashed == 0


# revoke

async def test_revoke_records_the_reason(keys: KeyService, store: InMemoryEventStore) -> None:
    await given(store, created(KEY))
    state = await keys.revoke(KEY, reason="  leaked  ", metadata=META)
    assert await events_after(store, 1) == [KeyRevoked(key_id=KEY, at=NOW, reason="leaked")]
    assert state.status(NOW) == "revoked" and state.revoke_reason == "leaked"


async def test_revocation_is_irreversible(keys: KeyService, store: InMemoryEventStore,
                                          clock: SettableClock) -> None:
    await given(store, created(KEY), REVOKED)
    clock.advance(timedelta(days=365))
    with pytest.raises(KeyRevokedError):
        await keys.revoke(KEY, reason="again")
    assert await events_after(store, 2) == []
    state, _ = await keys.history(KEY)
    assert state.status(clock()) == "revoked" and state.revoked_at == REVOKED.at


# history and unknown keys

async def test_history_is_the_folded_state_and_the_recorded_events(keys: KeyService,
                                                                   store: InMemoryEventStore) -> None:
    await store.append(KEY, 0, [created(KEY), *changes(KEY, 2)], META)
    state, events = await keys.history(KEY)
    assert (state.version, state.name, state.updated_at) == (3, "name 1", T0 + timedelta(seconds=2))
    assert events == await store.read_stream(KEY)


@pytest.mark.parametrize("key_id", ["AAAAAAAAAAAA", "'; drop table events; --", ""])
async def test_unknown_or_malformed_keys_are_not_found(keys: KeyService, store: InMemoryEventStore,
                                                       key_id: str) -> None:
    for command in (keys.history(key_id), keys.change_access(key_id, name="x"), keys.rotate(key_id),
                    keys.revoke(key_id)):
        with pytest.raises(KeyNotFound):
            await command
    assert await store.head_position() == 0



async def test_create_and_rotate_hashing_count_against_the_shared_argon2_bound(
        store: InMemoryEventStore, hasher: CountingHasher, clock: SettableClock) -> None:
    """An admin creating keys in a loop could fill the argon2 threads verify needs: its hashing now
    takes places in the same queue as verify's cold checks, a quarter of it at most."""
    queue = Argon2Queue(4)  # a caller's share: 1
    keys = KeyService(store, hasher, random_bytes=random.Random(8).randbytes, clock=clock, queue=queue)
    admin = Metadata(actor="key:admin", ip="198.51.100.7")
    assert queue.admit("198.51.100.7") is None  # that caller already has a hash (or a check) running
    with pytest.raises(Busy, match="this caller"):
        await keys.create("while busy", access=GLOBAL_READ, metadata=admin)
    assert await store.head_position() == 0 and hasher.hashed == 0  # nothing written, nothing hashed
    made = await keys.create("another caller", access=GLOBAL_READ, metadata=Metadata(ip="203.0.113.9"))
    queue.release("198.51.100.7")
    await keys.rotate(made.state.key_id, metadata=admin)
    assert queue.pending == 0 and hasher.hashed == 2
