"""``/healthz`` and ``/readyz``."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency

from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.ports import Connectivity, KeyDirectory
from keyledger.services.http.schemas import Health, Ready


@get("/healthz")
async def healthz() -> Health:
    """The process is up."""
    return Health()


@get("/readyz", responses=error_responses(503))
async def readyz(cache: NamedDependency[KeyDirectory], bus: NamedDependency[Connectivity],
                 startup_head: NamedDependency[int]) -> Ready:
    """Ready once the key cache has caught up with the store as it was at start, and the bus is connected."""
    if not bus.is_connected:
        raise ApiError(503, "NOT_READY", "not connected to NATS")
    if cache.position < startup_head:
        raise ApiError(503, "NOT_READY", f"key cache at {cache.position} of {startup_head}")
    return Ready(ready=True, position=cache.position, lag=await cache.lag(), keys=len(cache), forged=cache.forged)


HEALTH_ROUTES = [healthz, readyz]
