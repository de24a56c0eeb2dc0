"""The key cache's compact form: a key decoded from its bytes equals the original, and a new state (a
revocation) is what every later read sees, whichever form the key was in."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.credits import Credits, Refill
from keyledger.domain.events import KeyRevoked
from keyledger.domain.key import KeyState, evolve
from keyledger.projections.compact_keys import CompactKeys, SharedValues, decode, encode
from keyledger.projections.key_cache import Outcome, apply_at
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.storage.memory import InMemoryEventStore
from tests.support.clock import SettableClock
from tests.support.factories import T0, created


def _argon2(seed: int) -> str:
    salt, digest = bytes([seed]) * 16, bytes([seed + 1]) * 32
    return (f"$argon2id$v=19$m=65536,t=3,p=4${base64.b64encode(salt).decode().rstrip('=')}"
            f"${base64.b64encode(digest).decode().rstrip('=')}")


FULL = KeyState(
    key_id="AbCdEf123456", version=7, name="ingest – prod", organization_id="org-1",
    access=(AccessEntry(resource="website", id="site-a", scopes=("write:data", "read:data")),
            AccessEntry(resource="error_data", scopes=("read:analytics",)),
            AccessEntry(resource="legacy", scopes=("read:data", "made:up"))),  # names the codec does not know
    expires_at=T0 + timedelta(days=30), secret_hash=_argon2(3), prefix="kl", start="kl_AbCdEf123456x9Qz",
    created_at=T0, updated_at=T0 + timedelta(hours=1), previous_hash=_argon2(9),
    previous_valid_until=T0 + timedelta(hours=2), revoked_at=T0 + timedelta(hours=3), revoke_reason="leaked",
    rate_limit=600, description="the ingest service", tags=("prod", "ingest"),
    allowed_networks=("10.0.0.0/8", "2001:db8::/32"),
    credits=Credits(remaining=100, refill=Refill(amount=100, interval="monthly", day_of_month=1)),
    credits_set_at=T0 + timedelta(minutes=5), credits_version=3, owner_id="customer-42",
    import_lookup="0123456789abcdef")


@pytest.mark.parametrize("state", [
    FULL,
    evolve(None, created("k1")),  # a placeholder hash, every optional field at its default
    msgspec.structs.replace(FULL, start="other_start", secret_hash="sha256:" + "ab" * 32, access=(),
                            organization_id=None, tags=(), credits=None, owner_id=None),
    msgspec.structs.replace(FULL, secret_hash="$argon2id$v=19$m=65536,t=3,p=4$not base64!$x"),
    msgspec.structs.replace(FULL, owner_id="", description="", previous_hash=None, credits_version=0),
    msgspec.structs.replace(evolve(None, created("k2")), updated_at=T0 + timedelta(days=1)),  # changed once
    msgspec.structs.replace(evolve(None, created("k3")), import_lookup="fedcba9876543210"),  # only the last set
    msgspec.structs.replace(FULL, access=(AccessEntry(resource="website", id="w", scopes=("made:up",)),
                                          AccessEntry(resource="website", id="v", scopes=("made:up",)),
                                          AccessEntry(resource="website", id="u", scopes=()))),
])
def test_a_key_decoded_from_its_bytes_equals_the_original(state: KeyState) -> None:
    shared = SharedValues()
    blob = encode(state, shared)
    assert decode(state.key_id, blob, shared.values) == state
    assert msgspec.json.encode(decode(state.key_id, blob, shared.values)) == msgspec.json.encode(state)


def test_the_compact_form_is_small() -> None:
    """The argon2 hash as raw bytes, shared values as indexes: well under half a JSON state."""
    assert len(encode(FULL, SharedValues())) < len(msgspec.json.encode(FULL)) / 2


def _keys(count: int, hot_limit: int) -> CompactKeys:
    return CompactKeys((evolve(None, created(f"key{i:09d}")) for i in range(count)), hot_limit=hot_limit)


def _revoke(model: Any, key_id: str) -> None:
    version = model[key_id].version
    assert apply_at(model, KeyRevoked(key_id=key_id, at=T0, reason="r"), version + 1) is Outcome.APPLIED


@pytest.mark.parametrize("form", ["cold", "hot"])
def test_a_revocation_is_seen_at_once_whichever_form_the_key_is_in(form: str) -> None:
    keys = _keys(5, hot_limit=2)
    if form == "hot":
        assert keys.use("key000000001") is not None
        assert "key000000001" in keys.hot
    else:
        assert "key000000001" in keys.cold
    _revoke(keys, "key000000001")
    assert keys.get("key000000001").revoked_at == T0
    assert keys.use("key000000001").revoked_at == T0  # type: ignore[union-attr]
    for other in ("key000000002", "key000000003", "key000000004"):  # push it out of the hot set again
        keys.use(other)
    assert "key000000001" in keys.cold and "key000000001" not in keys.hot
    assert keys.get("key000000001").revoked_at == T0
    assert len(keys) == 5 and sorted(keys) == [f"key{i:09d}" for i in range(5)]
    assert [s.revoked_at for s in keys.states() if s.key_id == "key000000001"] == [T0]


def test_the_hot_set_stays_within_its_limit_and_reading_without_using_keeps_keys_cold() -> None:
    keys = _keys(50, hot_limit=10)
    for i in range(50):
        assert keys.use(f"key{i:09d}") is not None
    assert len(keys.hot) == 10 and len(keys.cold) == 40
    assert keys.get("key000000000") is not None and "key000000000" in keys.cold  # folding or listing
    assert keys.use("nope") is None and keys.get("nope") is None and "nope" not in keys


def test_listing_keeps_decoded_keys_while_the_hot_set_has_room_and_never_evicts_for_them() -> None:
    keys = _keys(50, hot_limit=30)
    for i in range(20):
        keys.use(f"key{i:09d}")
    used = set(keys.hot)
    listed = list(keys.states())
    assert sorted(s.key_id for s in listed) == sorted(keys) and len(listed) == 50
    assert len(keys.hot) == 30 and used <= set(keys.hot)  # ten more kept decoded, no used key pushed out
    assert all(keys.get(s.key_id) == s for s in listed)
    again = {s.key_id: s for s in keys.states()}
    assert all(again[key_id] is keys.hot[key_id] for key_id in keys.hot)  # the same objects the next time


class _Table:
    """The key cache table as a live cache loads it: every state streamed once."""

    def __init__(self, states: list[KeyState]) -> None:
        self._states = states

    async def load_into(self, sink: Any) -> tuple[int, int]:
        for state in self._states:
            sink(state)
        return 1, 0


class _Feed:
    connected = following = False


async def test_a_loaded_cache_serves_keys_from_either_form_and_never_a_revoked_one() -> None:
    store = InMemoryEventStore(SettableClock(T0))
    recorded = await store.append("key000000001", 0, [created("key000000001")])
    cache = LiveKeyCache(store, _Table([evolve(None, r.event) for r in recorded]), _Feed())  # type: ignore[arg-type]
    await cache.start()
    assert (state := cache.get("key000000001")) is not None and state.revoked_at is None  # now hot
    revoked = msgspec.structs.replace(recorded[0], version=2, global_position=2,
                                      event=KeyRevoked(key_id="key000000001", at=T0, reason="r"))
    cache.apply_local([revoked])
    assert (state := cache.get("key000000001")) is not None and state.revoked_at == T0
    assert [s.revoked_at for s in cache.states()] == [T0] and len(cache) == 1



def test_sorted_ids_stay_in_order_and_per_organization_as_keys_are_added() -> None:
    keys = CompactKeys(hot_limit=3)
    organizations = ("org-1", "org-2", None)

    def add(i: int) -> None:
        state = msgspec.structs.replace(evolve(None, created(f"k{(i * 7919) % 1000:04d}")),
                                        organization_id=organizations[i % 3])
        if i % 2:
            keys.put_cold(state)
        else:
            keys[state.key_id] = state

    def expected(organization_id: str | None) -> list[str]:
        return sorted(s.key_id for s in keys.states() if organization_id in (None, s.organization_id))

    for i in range(40):
        add(i)
    keys.use(sorted(keys)[0])  # one key hot, the rest cold
    assert keys.sorted_ids() == expected(None)
    assert keys.sorted_ids("org-1") == expected("org-1") and len(expected("org-1")) == 14
    for i in range(40, 80):  # added after the lists were found: kept in order
        add(i)
    add(3)  # a new state of a key already held: not listed twice
    for organization_id in (None, "org-1", "org-2"):
        assert keys.sorted_ids(organization_id) == expected(organization_id)
        chosen = list(keys.states(organization_id))  # hot and cold keys of that organization only, decoded
        assert sorted(s.key_id for s in chosen) == expected(organization_id)
        assert all(s == keys.get(s.key_id) for s in chosen)
    assert list(keys.states("org-never")) == []
    del keys[keys.sorted_ids()[0]]
    assert keys.sorted_ids() == expected(None)
