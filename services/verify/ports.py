"""What the verify flow needs from the rest of the process, as protocols: the real components (rate
limiter, last-used tracker, usage emitter, live key cache, NATS bus) satisfy them as they are, and route
tests pass in-memory fakes."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Protocol, runtime_checkable

from keyledger.domain.usage import UsageEvent
from keyledger.services.verify.throttles import RateDecision


class Limiter(Protocol):
    """Per-key request budgets (``X-RateLimit-*``)."""

    async def hit(self, key_id: str, limit: int) -> RateDecision:
        """Count one request of ``key_id`` against ``limit`` per window."""
        ...


class LastTouch(Protocol):
    """Where a successful use of a key is noted."""

    def touch(self, key_id: str, at: datetime) -> None:
        """Record a use (no I/O)."""
        ...


class UsageSink(Protocol):
    """Where usage events go (batched to the audit trail)."""

    def emit(self, event: UsageEvent) -> Awaitable[None] | None:
        """Queue one usage event; never blocks. When the sink is durable, what completes once the event is
        safe (the request is answered only then); else None."""
        ...


class Confirmable(Protocol):
    """A key cache that knows when the store last confirmed it (``services.cache.live.LiveKeyCache``)."""

    def is_current(self, max_staleness: float, bus_connected: bool = False) -> bool:
        """Whether it may answer VALID (see :func:`keyledger.services.verify.flow.staleness_rule`)."""
        ...


@runtime_checkable
class Connectivity(Protocol):
    """The message bus connection, as far as readiness and the staleness rule are concerned."""

    @property
    def is_connected(self) -> bool:
        """Whether the connection is up right now."""
        ...
