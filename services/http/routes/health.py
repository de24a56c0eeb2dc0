"""``/healthz`` and ``/readyz``."""

from __future__ import annotations

from collections.abc import Sized

from litestar import get
from litestar.di import NamedDependency

from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.ports import Connectivity, KeyDirectory
from keyledger.services.http.schemas import Health, Ready
from keyledger.services.storage.database import StorageError


@get("/healthz")
async def healthz() -> Health:
    """The process is up."""
    return Health()


@get("/readyz", responses=error_responses(503))
async def readyz(cache: NamedDependency[KeyDirectory], bus: NamedDependency[Connectivity],
                 startup_head: NamedDependency[int], replicas: NamedDependency[Sized]) -> Ready:
    """Ready once the key cache has caught up with the store as it was at start. ``degraded`` says what
    is missing while it still serves: NATS (the cache then follows the store alone), or the store
    (commands answer 503; verifies are served while nothing newer is announced)."""
    if cache.position < startup_head:
        raise ApiError(503, "NOT_READY", f"key cache at {cache.position} of {startup_head}")
    degraded = []
    if not bus.is_connected:
        degraded.append("NATS unreachable: the key cache follows the event store alone")
    lag: int | None = None
    if cache.store_reachable:
        try:
            lag = await cache.lag()
        except StorageError:
            pass
    if lag is None:
        degraded.append("event store unreachable: commands answer 503; verifies are served from the key cache "
                        "while the bus announces nothing newer")
    return Ready(ready=True, position=cache.position, lag=lag, keys=len(cache), forged=cache.forged,
                 degraded=degraded, replicas=len(replicas))


HEALTH_ROUTES = [healthz, readyz]
