"""``/healthz`` and ``/readyz``."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from keyledger.services.http.app import services_of
from keyledger.services.http.errors import error_response


@get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(request: Request) -> Response[Any]:  # type: ignore[type-arg]
    """Ready once the key cache has caught up with the store as it was at start, and NATS is connected."""
    services = services_of(request)
    cache = services.cache
    if not services.bus.is_connected:
        return error_response(503, "NOT_READY", "not connected to NATS")
    if cache.position < services.startup_head:
        return error_response(503, "NOT_READY", f"key cache at {cache.position} of {services.startup_head}")
    return Response({"ready": True, "position": cache.position, "lag": await cache.lag(), "keys": len(cache)})


HEALTH_ROUTES = [healthz, readyz]
