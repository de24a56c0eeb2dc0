"""The verify core: warm verifies skip argon2; rotation, grace and expiry are decided by the clock."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from keyledger.domain import token
from keyledger.domain.access import AccessEntry
from keyledger.domain.commands import CreateKey, RevokeKey, RotateKey
from keyledger.domain.key import decide, evolve
from keyledger.services.verify.verifier import Verifier
from tests.support.clock import SettableClock
from tests.support.hashing import CountingHasher
from tests.support.verifier import CHEAP, T0, Keys, World


async def test_cold_then_warm(world: World) -> None:
    keys, hasher, clock, verifier, secret = world
    assert (await verifier.verify(secret, "read:data")).code == "VALID"
    assert hasher.verifies == 1
    for _ in range(50):
        assert (await verifier.verify(secret, "read:data")).valid
    assert hasher.verifies == 1  # warm: no argon2


async def test_wrong_secrets_are_not_found_and_bounded(world: tuple[Keys, CountingHasher, SettableClock, Verifier,
                                                                    str]) -> None:
    keys, hasher, clock, verifier, secret = world
    key_id = token.parse(secret).key_id
    assert (await verifier.verify(secret, "read:data")).valid  # remembered before the attack
    wrong = [token.format_token("kl", key_id, ch * 32) for ch in "ABCDEFGHIJKLMNOP"]
    for _ in range(3):
        verdict = await verifier.verify(wrong[0], "read:data")
        assert (verdict.code, verdict.key) == ("NOT_FOUND", None)
    assert hasher.verifies == 2  # one good, one wrong: the same wrong token again costs nothing
    for candidate in wrong[1:10]:
        assert (await verifier.verify(candidate, "read:data")).code == "NOT_FOUND"
    assert hasher.verifies == 11  # ten wrong secrets: the per-key limit
    throttled = await verifier.verify(wrong[10], "read:data")
    assert (throttled.code, throttled.valid) == ("RATE_LIMITED", False)
    assert hasher.verifies == 11
    assert (await verifier.verify(secret, "read:data")).valid  # the owner's warm secret still works
    clock.now += timedelta(minutes=1)
    assert (await verifier.verify(wrong[10], "read:data")).code == "NOT_FOUND"  # next minute: checked again


async def test_at_most_max_pending_cold_checks_wait(world: World) -> None:
    keys, hasher, clock, _, secret = world
    verifier = Verifier(keys, hasher, "kl", clock, max_pending=2, key_failure_limit=100)
    key_id = token.parse(secret).key_id
    attempts = [token.format_token("kl", key_id, ch * 32) for ch in "ABCDEF"]
    verdicts = await asyncio.gather(*(verifier.verify(t, "read:data", caller=f"service-{i}")
                                      for i, t in enumerate(attempts)))  # many callers: the global bound
    codes = [v.code for v in verdicts]
    assert codes.count("NOT_FOUND") == 2 and codes.count("RATE_LIMITED") == 4
    assert hasher.verifies == 2


async def test_malformed_and_unknown_cost_nothing(world: World) -> None:
    keys, hasher, clock, verifier, secret = world
    assert (await verifier.verify(secret[:-1], "read:data")).code == "MALFORMED"
    other = token.generate(random.Random(9).randbytes)
    assert (await verifier.verify(other, "read:data")).code == "NOT_FOUND"
    assert hasher.verifies == 0


async def test_rotation_drops_the_remembered_secret_unless_in_grace(
        world: World) -> None:
    keys, hasher, clock, verifier, secret = world
    key_id = token.parse(secret).key_id
    assert (await verifier.verify(secret, "read:data")).valid
    new = token.generate(random.Random(4).randbytes, key_id=key_id)
    (rotated,) = decide(keys[key_id], RotateKey(key_id=key_id, secret_hash=CHEAP.hash(new), start="s",
                                                grace_seconds=60), clock.now)
    keys[key_id] = evolve(keys[key_id], rotated)
    assert (await verifier.verify(secret, "read:data")).valid  # within grace, still warm
    assert (await verifier.verify(new, "read:data")).valid
    clock.now += timedelta(seconds=60)
    assert (await verifier.verify(secret, "read:data")).code == "NOT_FOUND"  # grace over: by the clock
    assert (await verifier.verify(new, "read:data")).valid


async def test_revoked_and_expired_are_told_only_to_the_right_secret(
        world: World) -> None:
    """A random secret for a known key id used to learn REVOKED/EXPIRED plus the organization, scopes
    and expiry. The secret is checked first: a wrong one is NOT_FOUND and learns nothing."""
    keys, hasher, clock, verifier, secret = world
    key_id = token.parse(secret).key_id
    wrong = token.format_token("kl", key_id, "w" * token.SECRET_LENGTH)
    clock.now = T0 + timedelta(days=1)
    assert (await verifier.verify(secret, "read:data")).code == "EXPIRED"
    guess = await verifier.verify(wrong, "read:data")
    assert (guess.code, guess.key, guess.scopes, guess.reason) == ("NOT_FOUND", None, (), "unknown key")
    clock.now = T0
    keys[key_id] = evolve(keys[key_id], decide(keys[key_id], RevokeKey(key_id=key_id), T0)[0])
    revoked = await verifier.verify(secret, "read:data")
    assert revoked.code == "REVOKED" and revoked.key is not None
    guess = await verifier.verify(wrong, "read:data")
    assert (guess.code, guess.key) == ("NOT_FOUND", None)


async def test_a_revoke_landing_during_the_secret_check_is_seen(
        world: World) -> None:
    """A verify already waiting on argon2 when a revoke landed used to answer VALID after the revoke."""
    keys, hasher, clock, verifier, secret = world
    key_id = token.parse(secret).key_id
    checking, revoked = asyncio.Event(), asyncio.Event()
    real_verify = hasher.verify

    async def slow_verify(secret_hash: str, presented: str) -> bool:
        checking.set()
        await revoked.wait()
        return await real_verify(secret_hash, presented)

    hasher.verify = slow_verify  # type: ignore[method-assign,assignment]
    answer = asyncio.create_task(verifier.verify(secret, "read:data"))
    await checking.wait()
    keys[key_id] = evolve(keys[key_id], decide(keys[key_id], RevokeKey(key_id=key_id), T0)[0])
    revoked.set()
    assert (await answer).code == "REVOKED"


async def test_forbidden_names_the_reason(world: World) -> None:
    keys, hasher, clock, verifier, secret = world
    verdict = await verifier.verify(secret, "write:data")
    assert (verdict.valid, verdict.code) == (False, "FORBIDDEN")
    assert "write:data" in verdict.reason and verdict.scopes == ("read:data",)


async def test_one_source_cannot_lock_a_key_out_for_another(
        world: World) -> None:
    """Anyone who knew a key id could make every cold check of it answer RATE_LIMITED."""
    keys, hasher, clock, verifier, secret = world
    key_id = token.parse(secret).key_id
    for i in range(12):
        wrong = token.format_token("kl", key_id, f"{i:02d}" + "w" * (token.SECRET_LENGTH - 2))
        await verifier.verify(wrong, "read:data", source="ip:203.0.113.66", caller="10.0.0.1")
    attacker = await verifier.verify(token.format_token("kl", key_id, "z" * token.SECRET_LENGTH), "read:data",
                                     source="ip:203.0.113.66", caller="10.0.0.1")
    assert attacker.code == "RATE_LIMITED"
    owner = await verifier.verify(secret, "read:data", source="ip:198.51.100.7", caller="10.0.0.1")
    assert owner.code == "VALID"  # cold (argon2), from another source


async def test_a_caller_gets_only_its_share_of_the_argon2_queue() -> None:
    rng = random.Random(5)
    secret = token.generate(rng.randbytes)
    parsed = token.parse(secret)
    (created,) = decide(None, CreateKey(
        key_id=parsed.key_id, name="svc", access=(AccessEntry(resource="global", scopes=("read:data",)),),
        expires_at=None, secret_hash=CHEAP.hash(secret), prefix="kl", start=parsed.start()), T0)
    keys, hasher = Keys({parsed.key_id: evolve(None, created)}), CountingHasher()
    release, both_waiting = asyncio.Event(), asyncio.Event()
    real_verify = hasher.verify
    waiting = [0]

    async def held(secret_hash: str, presented: str) -> bool:
        waiting[0] += 1
        if waiting[0] == 2:
            both_waiting.set()
        await release.wait()
        return await real_verify(secret_hash, presented)

    hasher.verify = held  # type: ignore[method-assign,assignment]
    verifier = Verifier(keys, hasher, "kl", SettableClock(T0), max_pending=8)  # each caller: 2 at a time
    flood = [asyncio.create_task(verifier.verify(token.format_token("kl", parsed.key_id, f"{i}" * 32), "read:data",
                                                 source=f"ip:{i}", caller="flooder")) for i in range(2)]
    await asyncio.wait_for(both_waiting.wait(), 5)  # both hold their argon2 places
    third = await verifier.verify(token.format_token("kl", parsed.key_id, "9" * 32), "read:data",
                                  source="ip:9", caller="flooder")
    assert third.code == "RATE_LIMITED" and "caller" in third.reason
    owner = asyncio.create_task(verifier.verify(secret, "read:data", source="ip:owner", caller="the owner's service"))
    release.set()
    assert (await owner).code == "VALID"
    assert [v.code for v in await asyncio.gather(*flood)] == ["NOT_FOUND", "NOT_FOUND"]


async def test_a_replica_that_cannot_confirm_it_is_current_never_answers_valid(
        world: World) -> None:
    keys, hasher, clock, _, secret = world
    current = [True]
    verifier = Verifier(keys, hasher, "kl", clock, is_current=lambda: current[0])
    assert (await verifier.verify(secret, "read:data")).code == "VALID"
    current[0] = False
    stale = await verifier.verify(secret, "read:data")
    assert (stale.valid, stale.code) == (False, "UNAVAILABLE") and "current" in stale.reason
    assert (await verifier.verify(secret, "write:data")).code == "FORBIDDEN"  # refusals stay what they are


async def test_the_same_cold_secret_presented_at_once_costs_one_argon2(
        world: World) -> None:
    """A client's burst of requests with its key before the first check finished: one argon2 run, all
    answered, none refused for the caller's share of the queue."""
    keys, hasher, clock, _, secret = world
    verifier = Verifier(keys, hasher, "kl", clock, max_pending=4)  # a caller's share: 1
    verdicts = await asyncio.gather(*(verifier.verify(secret, "read:data", caller="one service") for _ in range(32)))
    assert {v.code for v in verdicts} == {"VALID"} and hasher.verifies == 1


async def test_a_remembered_token_changed_anywhere_is_judged_in_full(world: World) -> None:
    """Warm verifies skip parsing only for the exact token argon2 accepted: the same length and key id with any
    one character changed (checksum, secret, a non-ASCII or control character) gets the full path's answer."""
    keys, hasher, clock, verifier, secret = world
    assert (await verifier.verify(secret, "read:data")).valid
    assert hasher.verifies == 1
    cold = Verifier(keys, CountingHasher(), "kl", clock)  # never saw the token: decides every variant in full
    for at in range(len(secret)):
        for char in ("A" if secret[at] != "A" else "B", "é", "\x00", "\ud800"):
            changed = secret[:at] + char + secret[at + 1:]
            warm, full = await verifier.verify(changed, "read:data"), await cold.verify(changed, "read:data")
            assert not warm.valid
            assert (warm.code, warm.reason) == (full.code, full.reason), (at, char)
    assert (await verifier.verify(secret, "read:data")).valid
