"""``create_app(settings)``: the Litestar API, with every connection opened in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components as OpenAPIComponents

from keyledger.services.bootstrap.api import open_api
from keyledger.services.config import Settings, load_settings
from keyledger.services.http.body_deadline import BodyDeadline
from keyledger.services.http.components import Components, api_components
from keyledger.services.http.dashboard.bulk import BULK_PAGES
from keyledger.services.http.dashboard.hygiene import HYGIENE_PAGES
from keyledger.services.http.dashboard.routes import dashboard_router, template_config
from keyledger.services.http.dashboard.security import SECURITY_PAGES
from keyledger.services.http.dashboard.webhooks import WEBHOOK_PAGES
from keyledger.services.http.deps import dependencies, gate_in, initial_state, publish
from keyledger.services.http.errors import EXCEPTION_HANDLERS, MAX_BODY_BYTES
from keyledger.services.http.guards import SECURITY_SCHEMES
from keyledger.services.http.ratelimit_headers import ratelimit_headers
from keyledger.services.http.routes.analytics import ANALYTICS_ROUTES
from keyledger.services.http.routes.audit import AUDIT_ROUTES
from keyledger.services.http.routes.bulk import BULK_ROUTES
from keyledger.services.http.routes.findings import FINDING_ROUTES
from keyledger.services.http.routes.forward_auth import FORWARD_AUTH_ROUTES
from keyledger.services.http.routes.health import HEALTH_ROUTES
from keyledger.services.http.routes.imports import IMPORT_ROUTES
from keyledger.services.http.routes.keys import KEY_ROUTES
from keyledger.services.http.routes.leaks import LEAK_ROUTES
from keyledger.services.http.routes.owners import OWNER_ROUTES
from keyledger.services.http.routes.reports import REPORT_ROUTES
from keyledger.services.http.routes.verify import VERIFY_PATH, VERIFY_ROUTES
from keyledger.services.http.routes.verify import serve as serve_verify
from keyledger.services.http.routes.webhooks import WEBHOOK_ROUTES
from keyledger.services.http.telemetry import METRICS_ROUTES
from keyledger.services.observe.logs import configure as configure_logging

ROUTES = [*BULK_ROUTES, *IMPORT_ROUTES, *KEY_ROUTES, *VERIFY_ROUTES, *AUDIT_ROUTES, *HEALTH_ROUTES,
          *FORWARD_AUTH_ROUTES, *METRICS_ROUTES, *REPORT_ROUTES, *WEBHOOK_ROUTES, *FINDING_ROUTES, *LEAK_ROUTES,
          *ANALYTICS_ROUTES, *OWNER_ROUTES]


class KeyledgerApp(Litestar):
    """The Litestar app, with ``POST /v1/verify`` (the hot path) answered by its raw ASGI route before
    Litestar's router, exception middleware and request objects see it; everything else as Litestar
    serves it. The route's ``/schema`` entry is its Litestar handler's (``routes/verify.py``).

    Every HTTP request reads its body under ``body_deadline`` (408 ``REQUEST_TIMEOUT`` once it is late)."""

    body_deadline: BodyDeadline

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            receive = self.body_deadline.receive(receive)
            if scope["path"] == VERIFY_PATH and scope["method"] == "POST":
                gate = gate_in(self.state)
                if gate is not None:  # None before the lifespan published the components: Litestar answers
                    scope["app"] = scope["litestar_app"] = self
                    await serve_verify(gate, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, components: Components | None = None) -> Litestar:
    """The keyledger HTTP API. Nothing connects until the app starts.

    ``components`` (tests): serve with these instead of starting the real ones; the app then has
    no lifespan work at all.
    """
    cfg = settings or (components.settings if components is not None else load_settings())

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_api(cfg) as api:  # the composition root builds the process; the handlers get its parts
            publish(app.state, api_components(api))
            yield

    app = KeyledgerApp(
        # the dashboard: /dashboard, with the pages of the modules built on its routes
        route_handlers=[*ROUTES, dashboard_router(*SECURITY_PAGES, *HYGIENE_PAGES, *WEBHOOK_PAGES, *BULK_PAGES)],
        lifespan=[lifespan] if components is None else [],
        state=initial_state(components) if components is not None else None,
        dependencies=dependencies(),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[ratelimit_headers],
        template_config=template_config(),
        logging_config=None,  # the process's own (services.observe.logs), not Litestar's queue handler
        openapi_config=OpenAPIConfig(title="keyledger", version="0.1.0", path="/schema",
                                     components=OpenAPIComponents(security_schemes=SECURITY_SCHEMES)),
    )
    app.body_deadline = BodyDeadline(cfg.body_timeout)
    return app


def app_from_env() -> Litestar:
    """App factory for ASGI servers (``granian --factory keyledger.services.http.app:app_from_env``); the
    process's log lines are structured (``KEYLEDGER_LOG_FORMAT``)."""
    settings = load_settings()
    configure_logging("api", settings.log_format, token_prefix=settings.token_prefix)
    return create_app(settings)
