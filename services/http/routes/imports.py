"""``POST /v1/keys/import``: keys made by another key service, one exported key a line (needs
``admin:apikeys``). An organization's admin imports only into its organization, and only keys granting what
it holds itself."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.services.http.errors import ApiError, error_responses, forbidden
from keyledger.services.http.guards import SECURITY, admin_guard
from keyledger.services.http.ports import KeyDirectory
from keyledger.services.http.telemetry import timed
from keyledger.services.keys.importer import (
    MAX_IMPORT_BYTES,
    ImportReport,
    TooManyLines,
    import_lines,
    split_lines,
)
from keyledger.services.keys.service import KeyService

Format = Literal["databuddy", "better-auth", "unkey", "keyledger"]


@post("/v1/keys/import", status_code=200, middleware=[timed("import")], request_max_body_size=MAX_IMPORT_BYTES,
      responses=error_responses(400, 401, 403, 413, 429, 503), guards=[admin_guard], security=SECURITY)
async def import_keys(request: Request[Any, Any, Any], keys: NamedDependency[KeyService],
                      cache: NamedDependency[KeyDirectory], admin: NamedDependency[KeyState],
                      metadata: NamedDependency[Metadata],
                      format: Annotated[Format, QueryParameter(description="The source's export format")],
                      organization_id: Annotated[str | None, QueryParameter(
                          description="The organization the keys go to (default: each row's own)")] = None,
                      ) -> ImportReport:
    """Import keys exported from databuddy, better-auth, unkey or keyledger (NDJSON body, at most 10,000
    lines): each keeps working with its existing secret. A bad line is reported by number and the rest are
    imported; a line imported before is ``unchanged`` (idempotent by the source's key id)."""
    organization = organization_id
    if admin.organization_id is not None:
        if organization not in (None, admin.organization_id):
            raise forbidden("an organization's admin key can only import keys into that organization")
        organization = admin.organization_id
    try:
        lines = split_lines(await request.body())
    except TooManyLines as exc:
        raise ApiError(413, "VALIDATION_ERROR", str(exc)) from None
    imported = getattr(cache, "imported", None)
    return await import_lines(keys, lines, format, prefix=keys.prefix, organization_id=organization, grantor=admin,
                              metadata=metadata, imported_key=imported or (lambda _lookup: None))


IMPORT_ROUTES = [import_keys]
