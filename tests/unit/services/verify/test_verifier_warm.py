"""``Verifier.warm``: a verdict only for a token argon2 already accepted, never doing argon2 work itself; what a
failure lockout still serves."""

from __future__ import annotations

import random
from datetime import timedelta

from keyledger.domain import token
from keyledger.domain.commands import RevokeKey, RotateKey
from keyledger.domain.key import decide, evolve
from tests.support.verifier import CHEAP, World


async def test_only_a_token_already_accepted_is_warm(world: World) -> None:
    keys, hasher, clock, verifier, secret = world
    key_id = token.parse(secret).key_id
    wrong = token.format_token("kl", key_id, "A" * 32)
    unknown = token.generate(random.Random(9).randbytes)
    for presented in (secret, wrong, unknown, "kl_garbage", "", secret[:-1] + "x"):
        assert verifier.warm(presented, "read:data") is None  # not yet accepted: cold
    assert hasher.verifies == 0  # warm never runs argon2
    assert (await verifier.verify(secret, "read:data")).code == "VALID"
    checks = hasher.verifies
    verdict = verifier.warm(secret, "read:data")
    assert verdict is not None and verdict.code == "VALID" and verdict.key is not None
    assert verdict.key.key_id == key_id
    forbidden = verifier.warm(secret, "admin:apikeys")
    assert forbidden is not None and forbidden.code == "FORBIDDEN"  # decided as verify decides
    assert verifier.warm(wrong, "read:data") is None and verifier.warm(unknown, "read:data") is None
    assert hasher.verifies == checks


async def test_a_rotated_or_revoked_key_is_no_longer_warm(world: World) -> None:
    keys, hasher, clock, verifier, secret = world
    key_id = token.parse(secret).key_id
    assert (await verifier.verify(secret, "read:data")).valid
    new_secret = token.format_token("kl", key_id, "B" * 32)
    (rotated,) = decide(keys[key_id], RotateKey(key_id=key_id, secret_hash=CHEAP.hash(new_secret),
                                                start=token.parse(new_secret).start()), clock())
    keys[key_id] = evolve(keys[key_id], rotated)
    assert verifier.warm(secret, "read:data") is None  # the old secret's hash is no longer accepted
    assert (await verifier.verify(new_secret, "read:data")).valid
    clock.advance(timedelta(seconds=1))
    (revoked,) = decide(keys[key_id], RevokeKey(key_id=key_id), clock())
    keys[key_id] = evolve(keys[key_id], revoked)
    verdict = verifier.warm(new_secret, "read:data")
    assert verdict is not None and verdict.code == "REVOKED" and not verdict.valid
