"""The verify path: token → in-memory key → remembered digest or argon2 → access decision."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Callable
from datetime import datetime
from typing import Literal, Protocol

import msgspec

from keyledger.domain import token
from keyledger.domain.access import AccessEntry, check_access, granted_scopes
from keyledger.domain.key import SHA256_HASH, KeyState
from keyledger.services.clock import epoch
from keyledger.services.hashing import Argon2Queue, SecretHasher
from keyledger.services.verify.throttles import FailureThrottle

_MAX_RECHECKS = 4  # a key changing more often than this during one check is refused (retry)
_MAX_FOREIGN_LENGTH = 512  # no source issues longer tokens: longer ones are MALFORMED without hashing


class KeyLookup(Protocol):
    """Where keys come from: the live cache (O(1), in memory)."""

    def get(self, key_id: str) -> KeyState | None: ...


VerdictCode = Literal["VALID", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "FORBIDDEN", "RATE_LIMITED",
                      "UNAVAILABLE", "USAGE_EXCEEDED"]


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one verification, with the reason a person can read."""

    valid: bool
    code: VerdictCode
    reason: str
    key: KeyState | None = None
    granted_by: AccessEntry | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes the key holds (empty when the key was not identified)."""
        return granted_scopes(self.key.access) if self.key is not None else ()


class Verifier:
    """Verifies tokens against the live cache; warm verifies do no I/O and no argon2.

    A secret that argon2 accepted is remembered as a keyed BLAKE2b MAC (with a per-process
    random key), tied to the hash it matched: rotation or revocation invalidates it.
    argon2 work is bounded three ways, so wrong secrets cannot starve valid traffic: a
    wrong token already seen is refused from memory; after ``key_failure_limit`` wrong
    secrets for one key id in a minute its cold checks stop until the minute ends (its
    remembered good secrets keep working); and at most ``max_pending`` checks wait for
    the argon2 threads at once.
    """

    def __init__(self, keys: KeyLookup, hasher: SecretHasher, prefix: str, clock: Callable[[], datetime],
                 max_pending: int = 16, key_failure_limit: int = 10, queue: Argon2Queue | None = None,
                 is_current: Callable[[], bool] | None = None,
                 imported: Callable[[str], KeyState | None] | None = None) -> None:
        self._is_current = is_current  # whether the key cache could confirm lately that it is current
        self._imported = imported  # imported keys by their lookup (None: this verifier serves keyledger tokens only)
        self.on_rehash: Callable[[KeyState, str], None] | None = None  # told of a SHA-256 secret that matched
        self._keys, self._hasher, self._prefix, self._clock = keys, hasher, prefix, clock
        self._id_at = len(prefix) + 1  # where a token's key id stands, and how long a token is
        self._id_end, self._length = self._id_at + token.KEY_ID_LENGTH, token.token_length(prefix)
        self._digest_key = os.urandom(32)
        self._known: dict[str, list[tuple[bytes, str]]] = {}  # key id → [(digest, secret hash)] accepted
        self._wrong: dict[str, list[tuple[bytes, str]]] = {}  # key id → recent wrong digests
        self._failures = FailureThrottle(key_failure_limit, clock=epoch(clock))
        self._queue = queue or Argon2Queue(max_pending)  # shared with create/rotate hashing in an API process
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}  # digest → the argon2 check running for it

    async def verify(self, presented: str, scope: str, website_id: str | None = None,
                     data: str | None = None, source: str = "", caller: str = "",
                     now: datetime | None = None) -> Verdict:
        """Check ``presented`` for ``scope`` on the named website / data kind. ``source`` is who presented
        it (the end client's forwarded IP, else the caller's address): wrong secrets are throttled per key
        and source, so one source cannot lock a key's owner out. ``caller`` is the connection's own
        address: it gets at most a fair share of the argon2 queue. ``now``: the caller's reading of the
        clock, when it has one (else this reads it)."""
        if now is None:
            now = self._clock()
        digest: bytes | None = None
        # warm: a token argon2 accepted before is byte for byte a token that parsed, so it needs no parsing
        # again; its key id is where every well-formed token has it, and its MAC must be remembered
        if type(presented) is str and len(presented) == self._length and presented.isascii():
            state = self._keys.get(presented[self._id_at:self._id_end])
            if state is not None:
                digest = self._digest(presented)
                if self._remembers(state, digest, now):
                    return self._decide(state, scope, website_id, data, now)
        try:
            parsed = token.parse(presented, self._prefix)
        except token.MalformedToken as exc:
            if self._imported is not None:  # not a keyledger token: perhaps one an imported key keeps
                found = await self._verify_imported(presented, scope, website_id, data, now, source, caller)
                if found is not None:
                    return found
            return Verdict(valid=False, code="MALFORMED", reason=exc.reason)
        state = self._keys.get(parsed.key_id)
        # the secret first: a wrong one learns nothing about the key but that its id (no secret) exists
        for _ in range(_MAX_RECHECKS):
            if state is None:
                return Verdict(valid=False, code="NOT_FOUND", reason="unknown key")
            digest = digest or self._digest(presented)  # once per verify (the warm check may have made it)
            if self._remembers(state, digest, now):  # decided without a pause, so nothing changed meanwhile
                break
            refusal = await self._check_secret(state, presented, digest, now, source, caller)
            if refusal is not None:
                return refusal
            now = self._clock()  # argon2 took a while
            latest = self._keys.get(parsed.key_id)  # re-read after the await: a revoke may have landed
            if latest is state:
                break
            state = latest
        else:
            return Verdict(valid=False, code="NOT_FOUND", reason="the key kept changing during the check; retry")
        return self._decide(state, scope, website_id, data, now)

    def warm(self, presented: str, scope: str, now: datetime | None = None) -> Verdict | None:
        """The verdict on ``presented`` if argon2 already accepted this exact token (for a hash its key still
        accepts), decided as :meth:`verify` decides it; None for anything else, without parsing, argon2 or
        I/O, and without saying why (unknown id, wrong or unchecked secret, garbage). What a failure lockout
        still serves: proof that the caller holds a good secret, which no wrong one can produce."""
        if now is None:
            now = self._clock()
        if type(presented) is str and len(presented) == self._length and presented.isascii():
            state = self._keys.get(presented[self._id_at:self._id_end])
            if state is not None and self._remembers(state, self._digest(presented), now):
                return self._decide(state, scope, None, None, now)
        return None

    async def _verify_imported(self, presented: str, scope: str, website_id: str | None, data: str | None,
                               now: datetime, source: str, caller: str) -> Verdict | None:
        """The verdict on a token that is no keyledger token, as an imported key's (``projections.imported``
        finds it by its SHA-256, in memory); None when no imported key has its lookup. Until the key is
        re-hashed its source's SHA-256 decides (compared in constant time) and ``on_rehash`` is told, so the
        secret gets an argon2id hash beside the answer; after that argon2id decides, as for any key."""
        assert self._imported is not None
        if not 0 < len(presented) <= _MAX_FOREIGN_LENGTH:
            return None
        sha = hashlib.sha256(presented.encode()).hexdigest()
        state = self._imported(sha[:16])
        if state is None:
            return None
        if state.secret_hash.startswith(SHA256_HASH):
            if not hmac.compare_digest(state.secret_hash[len(SHA256_HASH):], sha):
                return Verdict(valid=False, code="NOT_FOUND", reason="unknown key")
            verdict = self._decide(state, scope, website_id, data, now)
            if verdict.valid and self.on_rehash is not None:
                self.on_rehash(state, presented)  # beside the answer, which does not wait for argon2
            return verdict
        digest = self._digest(presented)
        if not self._remembers(state, digest, now):
            refusal = await self._check_secret(state, presented, digest, now, source, caller)
            if refusal is not None:
                return refusal
            now, latest = self._clock(), self._keys.get(state.key_id)  # argon2 took a while: re-read
            if latest is None or latest.secret_hash != state.secret_hash:
                return Verdict(valid=False, code="NOT_FOUND", reason="the key changed during the check; retry")
            state = latest
        return self._decide(state, scope, website_id, data, now)

    def _decide(self, state: KeyState, scope: str, website_id: str | None, data: str | None,
                now: datetime) -> Verdict:
        """The verdict for a key whose secret was accepted: its status, then its access, then whether the
        cache is current."""
        status = state.status(now)
        if status != "active":
            return Verdict(valid=False, code="REVOKED" if status == "revoked" else "EXPIRED",
                           reason=f"key is {status}", key=state)
        decision = check_access(state.access, scope, website_id, data)
        if not decision.allowed:
            return Verdict(valid=False, code="FORBIDDEN", reason=decision.reason, key=state)
        if self._is_current is not None and not self._is_current():
            return Verdict(valid=False, code="UNAVAILABLE", key=state,
                           reason="this replica cannot confirm its key cache is current (a revoke may be missing); "
                                  "retry, or ask another replica")
        return Verdict(valid=True, code="VALID", reason=decision.reason, key=state, granted_by=decision.granted_by)

    def _digest(self, presented: str) -> bytes:
        """What is remembered of a secret: its keyed BLAKE2b MAC under this process's random key (a third
        of HMAC-SHA256's cost at this length, and as good a MAC)."""
        return hashlib.blake2b(presented.encode(), key=self._digest_key, digest_size=32).digest()

    def _accepted_hashes(self, state: KeyState, now: datetime) -> list[str]:
        return [h for h in (state.secret_hash, state.previous_hash) if h is not None and _holds(state, h, now)]

    def _remembers(self, state: KeyState, digest: bytes, now: datetime) -> bool:
        """Whether argon2 accepted this secret (its ``digest``) before, for a hash ``state`` still accepts."""
        for remembered, secret_hash in self._known.get(state.key_id, ()):
            if hmac.compare_digest(digest, remembered) and _holds(state, secret_hash, now):
                return True
        return False

    async def _check_secret(self, state: KeyState, presented: str, digest: bytes, now: datetime, source: str = "",
                            caller: str = "") -> Verdict | None:
        """None when the secret (``digest``: its MAC, not remembered as accepted) is right; else the refusal
        (never saying which part was wrong)."""
        accepted = self._accepted_hashes(state, now)
        known = [entry for entry in self._known.get(state.key_id, ()) if _holds(state, entry[1], now)]
        unknown = Verdict(valid=False, code="NOT_FOUND", reason="unknown key")
        wrong = [entry for entry in self._wrong.get(state.key_id, ()) if entry[1] == state.secret_hash]
        if _remembered(digest, wrong):
            return unknown
        inflight = self._inflight.get(digest)
        if inflight is not None:  # the same secret is being checked right now: share that one argon2 run
            return None if await asyncio.shield(inflight) else unknown
        attempt = f"{state.key_id}|{source}"
        if self._failures.refusal(attempt) is not None:
            return Verdict(valid=False, code="RATE_LIMITED", reason="too many wrong secrets for this key; retry later")
        refusal = self._queue.admit(caller)
        if refusal is not None:
            return Verdict(valid=False, code="RATE_LIMITED", reason=refusal)
        self._failures.record(attempt)  # counted up front: concurrent checks cannot overshoot the limit
        outcome = self._inflight[digest] = asyncio.get_running_loop().create_future()
        accepted_now = False
        try:
            for secret_hash in accepted:
                if await self._hasher.verify(secret_hash, presented):
                    self._failures.forgive(attempt)
                    self._known[state.key_id] = [*known, (digest, secret_hash)][-4:]
                    accepted_now = True
                    return None
        finally:
            del self._inflight[digest]
            outcome.set_result(accepted_now)
            self._queue.release(caller)
        self._wrong[state.key_id] = [*wrong, (digest, state.secret_hash)][-16:]
        return unknown


def _holds(state: KeyState, secret_hash: str, now: datetime) -> bool:
    """Whether a secret that matched ``secret_hash`` is still accepted for ``state`` (not rotated away, or
    within the old secret's grace period)."""
    return secret_hash == state.secret_hash or (secret_hash == state.previous_hash
                                                 and state.previous_secret_valid(now))


def _remembered(digest: bytes, entries: list[tuple[bytes, str]]) -> bool:
    found = False
    for remembered, _ in entries:
        found |= hmac.compare_digest(digest, remembered)
    return found
