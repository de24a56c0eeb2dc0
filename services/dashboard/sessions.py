"""Dashboard sessions, held in this process's memory only: the cookie carries a random id, never the key.

A signed-in session keeps the admin key so that every request can re-check it through the API's gate
(a revoked, expired or rotated key ends its sessions at the next request); it never leaves memory, so
sessions do not survive a restart and belong to the replica that made them. Ids are looked up by their
SHA-256, so the table holds no usable cookie value either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

import msgspec

COOKIE = "keyledger_session"
IDLE_SECONDS = 30 * 60  # a session unused this long ends
MAX_AGE_SECONDS = 12 * 3600  # and any session ends this long after sign-in
MAX_SESSIONS = 10_000  # the oldest go first beyond this (signed-out visitors cannot exhaust memory)


class Session(msgspec.Struct, kw_only=True):
    """One browser's session: its CSRF token and, once signed in, the admin key and what it was."""

    csrf: str
    created: float
    seen: float
    key: str | None = None
    key_id: str | None = None
    start: str | None = None  # the key's start at sign-in: a rotation since then ends the session

    def __repr__(self) -> str:
        return f"Session(key_id={self.key_id!r}, signed_in={self.key is not None})"

    __str__ = __repr__

    def csrf_matches(self, token: str | None) -> bool:
        """Whether ``token`` is this session's CSRF token (constant time)."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Sessions by (the digest of) their id, oldest first, with idle and absolute expiry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, limit: int = MAX_SESSIONS) -> None:
        self._clock, self._limit = clock, limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self) -> tuple[str, Session]:
        """A new signed-out session and its id (the cookie value)."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), created=now, seen=now)
        self._sessions[_digest(session_id)] = session
        while len(self._sessions) > self._limit:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (None: unknown or expired, which is then forgotten)."""
        if not session_id or len(session_id) > 100:
            return None
        digest = _digest(session_id)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > IDLE_SECONDS or now - session.created > MAX_AGE_SECONDS:
            del self._sessions[digest]
            return None
        session.seen = now
        self._sessions.move_to_end(digest)
        return session

    def sign_in(self, old_id: str | None, key: str, key_id: str, start: str) -> tuple[str, Session]:
        """A fresh session (new id and CSRF token: a planted id is worthless) holding ``key``."""
        self.end(old_id)
        session_id, session = self.open()
        session.key, session.key_id, session.start = key, key_id, start
        return session_id, session

    def end(self, session_id: str | None) -> None:
        """Forget the session (sign-out, or its key no longer authenticates)."""
        if session_id:
            self._sessions.pop(_digest(session_id), None)

    def end_key(self, key_id: str) -> int:
        """End every session signed in with ``key_id``; how many there were."""
        gone = [digest for digest, s in self._sessions.items() if s.key_id == key_id]
        for digest in gone:
            del self._sessions[digest]
        return len(gone)
