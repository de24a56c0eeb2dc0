"""What the HTTP layer needs from the rest of the process, as protocols.

The real components (live key cache, rate limiter, last-used tracker, usage emitter, audit
queries, hourly usage counts, dashboard sessions, NATS bus) satisfy them as they are; route
tests pass in-memory fakes instead. The ones handlers receive by dependency injection are
``runtime_checkable``, because Litestar checks every injected value against its parameter's
annotation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from keyledger.domain.analytics import SeriesRange, UsageSeries
from keyledger.domain.key import KeyState
from keyledger.services.storage.audit_queries import AuditFilter
from keyledger.services.storage.dashboard_sessions import StoredSession
from keyledger.services.verify.ports import Connectivity as Connectivity  # the verify flow's ports, re-exported
from keyledger.services.verify.ports import LastTouch
from keyledger.services.verify.ports import Limiter as Limiter
from keyledger.services.verify.ports import UsageSink as UsageSink


@runtime_checkable
class KeyDirectory(Protocol):
    """Every key's current state, in memory (the live key cache), and how far it has caught up."""

    @property
    def position(self) -> int:
        """The highest global event position applied."""
        ...

    @property
    def forged(self) -> int:
        """Messages that claimed events the store does not hold (ignored)."""
        ...

    @property
    def store_reachable(self) -> bool:
        """Whether the event store answered the cache's last read."""
        ...

    def get(self, key_id: str) -> KeyState | None:
        """The key's current state, or None if unknown."""
        ...

    def states(self, organization_id: str | None = None) -> list[KeyState]:
        """A snapshot of every key's state, or with ``organization_id`` of that organization's keys."""
        ...

    def sorted_ids(self, organization_id: str | None) -> list[str]:
        """The ids of the organization's keys (None: every key's), in order; not to be changed."""
        ...

    def peek(self, key_id: str) -> KeyState | None:
        """The key's current state, or None if unknown, read for a listing (not a use of the key)."""
        ...

    def __len__(self) -> int: ...

    async def lag(self) -> int:
        """How many events the store holds beyond ``position``."""
        ...


@runtime_checkable
class LastUse(LastTouch, Protocol):
    """When each key was last used successfully (``touch``: record a use, no I/O)."""

    async def lookup(self, key_ids: Iterable[str]) -> dict[str, datetime]:
        """Last-used times of ``key_ids`` (keys never used are absent)."""
        ...


class CallerRegistry(Protocol):
    """The verify credentials this process accepts."""

    def identify(self, presented: str) -> str | None:
        """``credential:<id>`` for an active credential, else None."""
        ...


@runtime_checkable
class AuditPages(Protocol):
    """Pages of the audit trail, newest first."""

    async def page(self, where: AuditFilter, limit: int,
                   cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of records and the cursor of the next page (None on the last)."""
        ...


@runtime_checkable
class HourlyUsage(Protocol):
    """Verifications per key, hour and outcome (a projection of usage events)."""

    async def hourly(self, key_ids: Sequence[str], since: datetime,
                     until: datetime) -> dict[str, list[tuple[datetime, str, int]]]:
        """``key_id -> [(hour, outcome, count)]`` for the hours in [since, until)."""
        ...


@runtime_checkable
class UsageAnalytics(HourlyUsage, Protocol):
    """Usage time series (``GET /v1/analytics/usage``); the dashboard's charts read them too."""

    async def series(self, span: SeriesRange, key_ids: Sequence[str] | None = None,
                     organization_id: str | None = None) -> UsageSeries:
        """The series of ``span`` over ``key_ids`` or, with None, the keys of ``organization_id`` (None: all)."""
        ...


class SessionTable(Protocol):
    """Where the dashboard's sessions are kept, by the digest of their id."""

    async def insert(self, lookup: bytes, row: StoredSession) -> None:
        """Add a session."""
        ...

    async def find(self, lookup: bytes) -> StoredSession | None:
        """The session with this digest, if any."""
        ...

    async def touch(self, lookup: bytes, seen_at: datetime) -> None:
        """Record a request of the session."""
        ...

    async def delete(self, lookup: bytes) -> None:
        """Forget one session."""
        ...

    async def delete_expired(self, seen_before: datetime, created_before: datetime) -> int:
        """Forget sessions idle since ``seen_before`` or made before ``created_before``; how many."""
        ...
