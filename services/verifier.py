"""The verify path: token → in-memory key → remembered digest or argon2 → access decision."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import datetime
from typing import Callable, Protocol

import msgspec

from domain import token
from domain.access import AccessEntry, check_access, granted_scopes
from domain.key import KeyState
from services.hashing import SecretHasher


class KeyLookup(Protocol):
    """Where keys come from: the live cache (O(1), in memory)."""

    def get(self, key_id: str) -> KeyState | None: ...


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one verification, with the reason a person can read."""

    valid: bool
    code: str  # VALID, MALFORMED, NOT_FOUND, REVOKED, EXPIRED, FORBIDDEN
    reason: str
    key: KeyState | None = None
    granted_by: AccessEntry | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes the key holds (empty when the key was not identified)."""
        return granted_scopes(self.key.access) if self.key is not None else ()


class Verifier:
    """Verifies tokens against the live cache; warm verifies do no I/O and no argon2.

    A secret that argon2 accepted is remembered as an HMAC digest (with a per-process
    random key), tied to the hash it matched: rotation or revocation invalidates it.
    """

    def __init__(self, keys: KeyLookup, hasher: SecretHasher, prefix: str, clock: Callable[[], datetime]) -> None:
        self._keys, self._hasher, self._prefix, self._clock = keys, hasher, prefix, clock
        self._digest_key = os.urandom(32)
        self._known: dict[str, list[tuple[bytes, str]]] = {}  # key id → [(digest, secret hash)]

    async def verify(self, presented: str, scope: str, website_id: str | None = None,
                     data: str | None = None) -> Verdict:
        """Check ``presented`` for ``scope`` on the named website / data kind."""
        try:
            parsed = token.parse(presented, self._prefix)
        except token.MalformedToken as exc:
            return Verdict(valid=False, code="MALFORMED", reason=exc.reason)
        state = self._keys.get(parsed.key_id)
        if state is None:
            return Verdict(valid=False, code="NOT_FOUND", reason="unknown key")
        now = self._clock()
        status = state.status(now)
        if status != "active":
            return Verdict(valid=False, code=status.upper(), reason=f"key is {status}", key=state)
        if not await self._secret_matches(state, presented, now):
            return Verdict(valid=False, code="NOT_FOUND", reason="unknown key")
        decision = check_access(state.access, scope, website_id, data)
        if not decision.allowed:
            return Verdict(valid=False, code="FORBIDDEN", reason=decision.reason, key=state)
        return Verdict(valid=True, code="VALID", reason=decision.reason, key=state, granted_by=decision.granted_by)

    def _accepted_hashes(self, state: KeyState, now: datetime) -> list[str]:
        hashes = [state.secret_hash]
        if state.previous_hash is not None and state.previous_secret_valid(now):
            hashes.append(state.previous_hash)
        return hashes

    async def _secret_matches(self, state: KeyState, presented: str, now: datetime) -> bool:
        accepted = self._accepted_hashes(state, now)
        digest = hmac.new(self._digest_key, presented.encode(), hashlib.sha256).digest()
        known = [entry for entry in self._known.get(state.key_id, ()) if entry[1] in accepted]
        if any(hmac.compare_digest(digest, remembered) for remembered, _ in known):
            return True
        for secret_hash in accepted:
            if await self._hasher.verify(secret_hash, presented):
                self._known[state.key_id] = [*known, (digest, secret_hash)][-4:]
                return True
        return False
