"""The subset rule in the command handlers: what an organization's admin may rotate and re-scope.

Rotation hands whoever receives the new secret everything the key can do, so an organization's admin
rotates only a key whose every grant and rate limit it could have granted itself; a PATCH of a key's
access or limit leaves no grant it lacks; renaming and revoking need no grant."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import Forbidden
from keyledger.domain.key import KeyState
from keyledger.services.keys.service import IssuedKey, KeyService
from keyledger.services.storage.memory import InMemoryEventStore
from tests.support.clock import SettableClock
from tests.support.factories import T0
from tests.support.hashing import CountingHasher

SITE_A = (AccessEntry(resource="website", id="site-a", scopes=("read:data",)),)
ADMIN = (AccessEntry(resource="global", scopes=("admin:apikeys",)), *SITE_A)
STRONG = (AccessEntry(resource="global", scopes=("write:custom-sql", "admin:users", "read:export")),)


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore(SettableClock(T0 + timedelta(days=1)))


@pytest.fixture
def hasher() -> Iterator[CountingHasher]:
    hasher = CountingHasher()
    yield hasher
    hasher.close()


@pytest.fixture
def keys(store: InMemoryEventStore, hasher: CountingHasher) -> KeyService:
    return KeyService(store, hasher, prefix="kl", random_bytes=random.Random(21).randbytes,
                      clock=SettableClock(T0 + timedelta(days=1)))


async def org_admin(keys: KeyService) -> KeyState:
    return (await keys.create("org admin", organization_id="org-a", access=ADMIN)).state


async def strong_key(keys: KeyService) -> IssuedKey:
    return await keys.create("export", organization_id="org-a", access=STRONG, rate_limit=50_000)


async def test_an_organization_admin_cannot_rotate_a_stronger_key(keys: KeyService, store: InMemoryEventStore,
                                                                  hasher: CountingHasher) -> None:
    admin, strong = await org_admin(keys), await strong_key(keys)
    position, hashed = await store.head_position(), hasher.hashed
    with pytest.raises(Forbidden, match="write:custom-sql on global, admin:users on global, read:export on global "
                                        r"and a per-key rate_limit of 50000/min \(its own: 100/min\)"):
        await keys.rotate(strong.state.key_id, grace_seconds=3600, grantor=admin)
    assert (await store.head_position(), hasher.hashed) == (position, hashed)  # no event, no argon2 work


async def test_what_it_could_have_granted_it_rotates_and_the_operator_rotates_anything(keys: KeyService) -> None:
    admin, strong = await org_admin(keys), await strong_key(keys)
    weak = await keys.create("site a", organization_id="org-a", access=SITE_A, rate_limit=100)
    assert (await keys.rotate(weak.state.key_id, grantor=admin)).state.version == 2
    assert (await keys.rotate(admin.key_id, grantor=admin)).state.version == 2  # its own key
    assert (await keys.rotate(strong.state.key_id)).state.version == 2  # the operator (the CLI)
    global_admin = (await keys.create("root", access=ADMIN[:1])).state
    assert (await keys.rotate(strong.state.key_id, grantor=global_admin)).state.version == 3


async def test_a_change_of_access_or_limit_leaves_no_grant_it_lacks(keys: KeyService) -> None:
    admin, strong = await org_admin(keys), await strong_key(keys)
    key_id = strong.state.key_id
    with pytest.raises(Forbidden, match="it lacks write:custom-sql on global"):
        await keys.change_access(key_id, rate_limit=10, grantor=admin)  # the scopes it lacks stay
    with pytest.raises(Forbidden, match=r"it lacks a per-key rate_limit of 50000/min"):
        await keys.change_access(key_id, access=SITE_A, grantor=admin)  # the limit it lacks stays
    assert (await keys.history(key_id))[0].version == 1
    assert (await keys.change_access(key_id, name="renamed", tags=["x"], grantor=admin)).access == STRONG
    weakened = await keys.change_access(key_id, access=SITE_A, rate_limit=0, grantor=admin)
    assert (weakened.access, weakened.rate_limit) == (SITE_A, None)
    assert (await keys.revoke((await strong_key(keys)).state.key_id)).revoked_at is not None  # needs no grant
