"""Dashboard sessions: the browser holds a random 256-bit session id in its cookie; the server keeps, by the
SHA-256 of that id, the signed-in key's id and start, a CSRF token and the key itself **wrapped** (AES-GCM
under a key derived from the session id). So the sessions table (Postgres, shared by every API process and
kept across restarts) holds nothing usable without the cookie, and the cookie holds nothing but the id.

Every request unwraps the key and re-checks it through the API's gate, so a revoked, expired or rotated
key ends its sessions at the next request. Sessions end after ``IDLE`` without a request, ``MAX_AGE``
after sign-in, and on sign-out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyledger.services.http.ports import SessionTable
from keyledger.services.storage.dashboard_sessions import StoredSession

COOKIE = "keyledger_session"
SIGN_IN_COOKIE = "keyledger_sign_in"  # the sign-in form's CSRF token (double-submit: no server state)
IDLE = timedelta(minutes=30)  # a session unused this long ends
MAX_AGE = timedelta(hours=12)  # and any session ends this long after sign-in
TOUCH_EVERY = timedelta(minutes=1)  # how stale ``seen_at`` may get before a request writes it again
_LOOKUP, _WRAP = b"keyledger dashboard session lookup\x00", b"keyledger dashboard session key\x00"


class Session(msgspec.Struct, frozen=True, kw_only=True):
    """A live, signed-in session: its id (the cookie value), the admin key unwrapped for this request only."""

    id: str
    key: str
    key_id: str
    start: str
    csrf: str

    def __repr__(self) -> str:
        return f"Session(key_id={self.key_id!r})"

    __str__ = __repr__


def lookup_of(session_id: str) -> bytes:
    """The digest a session is stored under."""
    return hashlib.sha256(_LOOKUP + session_id.encode()).digest()


def _cipher(session_id: str) -> AESGCM:
    return AESGCM(hashlib.sha256(_WRAP + session_id.encode()).digest())


def wrap(session_id: str, key: str) -> bytes:
    """``key`` encrypted under the session id (nonce first; the lookup digest is the associated data)."""
    nonce = os.urandom(12)
    return nonce + _cipher(session_id).encrypt(nonce, key.encode(), lookup_of(session_id))


def unwrap(session_id: str, wrapped: bytes) -> str | None:
    """The key ``wrap`` sealed, or None when ``wrapped`` was not sealed under this id."""
    try:
        return _cipher(session_id).decrypt(wrapped[:12], wrapped[12:], lookup_of(session_id)).decode()
    except (InvalidTag, ValueError, UnicodeDecodeError):
        return None


def tokens_match(given: object, expected: str) -> bool:
    """Whether a submitted CSRF token is ``expected`` (constant time)."""
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class Sessions:
    """Sign-in, lookup (with expiry) and sign-out over a :class:`SessionTable`, on the process clock."""

    def __init__(self, table: SessionTable, clock: Callable[[], datetime]) -> None:
        self._table, self._clock = table, clock

    async def sign_in(self, key: str, key_id: str, start: str) -> Session:
        """A new session holding ``key`` (and expired ones cleared away)."""
        now = self._clock()
        await self._table.delete_expired(now - IDLE, now - MAX_AGE)
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        await self._table.insert(lookup_of(session_id), StoredSession(
            key_id=key_id, start=start, wrapped=wrap(session_id, key), csrf=csrf, created_at=now, seen_at=now))
        return Session(id=session_id, key=key, key_id=key_id, start=start, csrf=csrf)

    async def get(self, session_id: str | None) -> Session | None:
        """The live session with this id; None when unknown, expired (then forgotten) or not unwrappable."""
        if not session_id or len(session_id) > 100:
            return None
        lookup = lookup_of(session_id)
        row = await self._table.find(lookup)
        if row is None:
            return None
        now = self._clock()
        key = unwrap(session_id, row.wrapped)
        if key is None or now - row.seen_at > IDLE or now - row.created_at > MAX_AGE:
            await self._table.delete(lookup)
            return None
        if now - row.seen_at > TOUCH_EVERY:
            await self._table.touch(lookup, now)
        return Session(id=session_id, key=key, key_id=row.key_id, start=row.start, csrf=row.csrf)

    async def end(self, session_id: str | None) -> None:
        """Forget the session (sign-out, or its key no longer authenticates)."""
        if session_id and len(session_id) <= 100:
            await self._table.delete(lookup_of(session_id))
