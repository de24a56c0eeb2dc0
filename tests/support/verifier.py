"""The verify core's world in its unit tests: one key in memory, a verifier over it on a settable clock, and a
hasher that counts the argon2 work."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher

from keyledger.domain import token
from keyledger.domain.access import AccessEntry
from keyledger.domain.commands import CreateKey
from keyledger.domain.key import KeyState, decide, evolve
from keyledger.services.verify.verifier import Verifier
from tests.support.clock import SettableClock
from tests.support.hashing import CountingHasher

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Keys(dict[str, KeyState]):
    """The lookup the verifier reads (a dict, like the live cache)."""


World = tuple[Keys, CountingHasher, SettableClock, Verifier, str]  # keys, hasher, clock, verifier, a key's secret


def one_key_world() -> World:
    """A global ``read:data`` key expiring a day after T0, in a fresh verifier's lookup; and its secret."""
    rng = random.Random(3)
    secret = token.generate(rng.randbytes)
    parsed = token.parse(secret)
    (created,) = decide(None, CreateKey(
        key_id=parsed.key_id, name="svc", access=(AccessEntry(resource="global", scopes=("read:data",)),),
        expires_at=T0 + timedelta(days=1), secret_hash=CHEAP.hash(secret), prefix="kl", start=parsed.start()), T0)
    keys, hasher, clock = Keys(), CountingHasher(), SettableClock(T0)
    keys[parsed.key_id] = evolve(None, created)
    return keys, hasher, clock, Verifier(keys, hasher, "kl", clock), secret
