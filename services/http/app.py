"""``create_app(settings)``: the Litestar API, with every connection opened in its lifespan."""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, AsyncIterator

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.openapi import OpenAPIConfig

from keyledger.services.config import Settings, load_settings
from keyledger.services.http.components import Components, start_components
from keyledger.services.http.errors import EXCEPTION_HANDLERS
from keyledger.services.http.ratelimit_headers import ratelimit_headers

MAX_BODY_BYTES = 64 * 1024


Services = Components  # what request handlers use (built by start_components)


def services_of(request: ASGIConnection[Any, Any, Any, Any]) -> Services:
    """The Services of the app serving ``request``."""
    services: Services = request.app.state.services
    return services


def create_app(settings: Settings | None = None) -> Litestar:
    """The keyledger HTTP API. Nothing connects until the app starts."""
    from keyledger.services.http.routes.audit import AUDIT_ROUTES
    from keyledger.services.http.routes.keys import KEY_ROUTES
    from keyledger.services.http.routes.health import HEALTH_ROUTES
    from keyledger.services.http.routes.verify import VERIFY_ROUTES

    cfg = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.services = await start_components(stack, cfg)
            yield

    return Litestar(
        route_handlers=[*KEY_ROUTES, *VERIFY_ROUTES, *AUDIT_ROUTES, *HEALTH_ROUTES],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[ratelimit_headers],
        openapi_config=OpenAPIConfig(title="keyledger", version="0.1.0", path="/schema"),
    )


def app_from_env() -> Litestar:
    """App factory for ASGI servers (``granian --factory keyledger.services.http.app:app_from_env``)."""
    return create_app(load_settings())
