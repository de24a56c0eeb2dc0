"""Route guards: they run before the body is parsed, so even a malformed request gets its 401/403/429
first, with the rate-limit headers. The authenticated key reaches handlers as the ``admin`` dependency."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Reference, SecurityRequirement, SecurityScheme

from keyledger.services.http.deps import ADMIN, gate_of

SECURITY_SCHEMES: dict[str, SecurityScheme | Reference] = {
    "bearer": SecurityScheme(type="http", scheme="bearer", description="Authorization: Bearer <key>"),
    "apiKey": SecurityScheme(type="apiKey", name="x-api-key", security_scheme_in="header",
                             description="x-api-key: <key>"),
    "gatewayCaller": SecurityScheme(type="apiKey", name="X-Keyledger-Caller", security_scheme_in="header",
                                    description="forward-auth: the gateway's verify credential"),
}
SECURITY: list[SecurityRequirement] = [{"bearer": []}, {"apiKey": []}]  # either one


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The caller must hold ``admin:apikeys`` globally."""
    connection.state[ADMIN] = await gate_of(connection).authenticate(connection, ("admin:apikeys",))


async def audit_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The audit trail: ``read:export`` or ``admin:apikeys``."""
    connection.state[ADMIN] = await gate_of(connection).authenticate(connection, ("read:export", "admin:apikeys"))
