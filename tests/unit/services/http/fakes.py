"""In-memory stand-ins for what an API process wires up (no Postgres, no NATS): the HTTP layer's
``Components`` built on the in-memory event store, with the real key service, verifier and throttle."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from keyledger.domain.analytics import SeriesRange, UsageSeries, series_of
from keyledger.domain.key import KeyState
from keyledger.domain.rate import window_start
from keyledger.domain.recorded import RecordedEvent
from keyledger.domain.usage import UsageEvent
from keyledger.projections.key_cache import KeyCache, apply_at
from keyledger.services.clock import epoch
from keyledger.services.config import Settings
from keyledger.services.hashing import SecretHasher
from keyledger.services.http.components import Components
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.audit_queries import AuditFilter
from keyledger.services.storage.dashboard_sessions import StoredSession
from keyledger.services.storage.memory import InMemoryEventStore
from keyledger.services.verify.throttles import FailureThrottle, RateDecision, refused
from keyledger.services.verify.verifier import Verifier
from tests.support.clock import SettableClock
from tests.support.notary import memory_notary

CHEAP = Settings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1,
                 verify_open=True)  # route tests of verify call it without a credential (e2e checks the default)


class MemoryKeyCache:
    """The live key cache without JetStream: applies what the key service appends."""

    def __init__(self) -> None:
        self.keys: KeyCache = {}
        self.position = 0
        self.forged = 0
        self.store_reachable = True

    def get(self, key_id: str) -> KeyState | None:
        return self.keys.get(key_id)

    def states(self, organization_id: str | None = None) -> list[KeyState]:
        return [s for s in self.keys.values() if organization_id in (None, s.organization_id)]

    def sorted_ids(self, organization_id: str | None) -> list[str]:
        return sorted(k for k, s in self.keys.items() if organization_id in (None, s.organization_id))

    def peek(self, key_id: str) -> KeyState | None:
        return self.keys.get(key_id)

    def __len__(self) -> int:
        return len(self.keys)

    async def lag(self) -> int:
        return 0

    def apply_local(self, recorded: list[RecordedEvent]) -> None:
        for event in recorded:
            apply_at(self.keys, event.event, event.version)
            self.position = max(self.position, event.global_position)


class MemoryLimiter:
    """Fixed one-minute windows counted in a dict (one replica's view of the shared limiter)."""

    def __init__(self, clock: SettableClock) -> None:
        self._epoch = epoch(clock)
        self._counts: dict[tuple[str, int], int] = {}

    async def hit(self, key_id: str, limit: int) -> RateDecision:
        now = self._epoch()
        start = window_start(now)
        used = self._counts.get((key_id, start), 0)
        if used >= limit:
            return refused(limit, start + 60, now)
        self._counts[(key_id, start)] = used + 1
        return RateDecision(allowed=True, limit=limit, remaining=limit - used - 1, reset=start + 60)


class MemoryLastUse:
    def __init__(self) -> None:
        self.seen: dict[str, datetime] = {}

    def touch(self, key_id: str, at: datetime) -> None:
        self.seen[key_id] = at

    async def lookup(self, key_ids: Iterable[str]) -> dict[str, datetime]:
        return {key_id: self.seen[key_id] for key_id in key_ids if key_id in self.seen}


class RecordingUsage:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)


class ListAudit:
    """Audit records held in a list, filtered like the real query (newest first, no cursor)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.asked: list[AuditFilter] = []

    async def page(self, where: AuditFilter, limit: int,
                   cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        self.asked.append(where)
        found = [r for r in self.records if where.organization_id in (None, r["organization_id"])]
        return sorted(found, key=lambda r: r["at"], reverse=True)[:limit], None


class NoRows(ExportSource):
    """An export source with no records (the route only streams what ``rows`` yields)."""

    def __init__(self) -> None:
        pass

    async def rows(self, start: datetime | None, end: datetime | None,
                   size: int) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        for _ in ():
            yield []


class Bus:
    def __init__(self) -> None:
        self.is_connected = True


class NoUsageCounts:
    """Hourly usage counts with no verification counted yet (the dashboard's charts show empty hours)."""

    async def hourly(self, key_ids: Sequence[str], since: datetime,
                     until: datetime) -> dict[str, list[tuple[datetime, str, int]]]:
        return {}

    async def series(self, span: SeriesRange, key_ids: Sequence[str] | None = None,
                     organization_id: str | None = None) -> UsageSeries:
        return series_of(span, ())


class MemorySessionTable:
    """The dashboard's sessions in this process's memory (``DashboardSessionTable`` keeps them in Postgres)."""

    def __init__(self) -> None:
        self.rows: dict[bytes, StoredSession] = {}

    async def insert(self, lookup: bytes, row: StoredSession) -> None:
        self.rows[lookup] = row

    async def find(self, lookup: bytes) -> StoredSession | None:
        return self.rows.get(lookup)

    async def touch(self, lookup: bytes, seen_at: datetime) -> None:
        if lookup in self.rows:
            self.rows[lookup] = msgspec.structs.replace(self.rows[lookup], seen_at=seen_at)

    async def delete(self, lookup: bytes) -> None:
        self.rows.pop(lookup, None)

    async def delete_expired(self, seen_before: datetime, created_before: datetime) -> int:
        gone = [k for k, r in self.rows.items() if r.seen_at < seen_before or r.created_at < created_before]
        for lookup in gone:
            del self.rows[lookup]
        return len(gone)


def memory_components(clock: SettableClock, settings: Settings = CHEAP) -> Components:
    """Everything the HTTP layer uses, in memory; the key service's writes reach the cache at once."""
    cache, hasher = MemoryKeyCache(), SecretHasher(settings)
    keys = KeyService(InMemoryEventStore(clock), hasher, prefix=settings.token_prefix, clock=clock,
                      on_events=cache.apply_local)
    return Components(
        settings=settings, clock=clock, keys=keys, cache=cache, verifier=Verifier(cache, hasher, settings.token_prefix,
                                                                                   clock),
        limiter=MemoryLimiter(clock), auth_failures=FailureThrottle(settings.auth_failure_limit, clock=epoch(clock)),
        last_used=MemoryLastUse(), usage=RecordingUsage(), audit=ListAudit(), export=NoRows(), bus=Bus(),
        startup_head=0, notary=memory_notary(), usage_counts=NoUsageCounts(),
        dashboard_sessions=MemorySessionTable())
