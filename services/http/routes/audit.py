"""``/v1/audit``: the audit trail for ``read:export`` or ``admin:apikeys`` keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Stream

from keyledger.services.http.app import services_of
from keyledger.services.storage.audit_queries import AuditFilter
from keyledger.services.http.auth import acting_admin, audit_guard
from keyledger.services.http.errors import ApiError


def _organization(request: Request, asked: str | None) -> str | None:  # type: ignore[type-arg]
    """An organization's key sees only its organization's records."""
    own = acting_admin(request).organization_id
    if own is not None and asked not in (None, own):
        raise ApiError(403, "FORBIDDEN", "Insufficient permissions")
    return own or asked


@get("/v1/audit", guards=[audit_guard])
async def audit(request: Request, key_id: str | None = None, organization_id: str | None = None,  # type: ignore[type-arg]
                outcome: str | None = None, kind: str | None = None,
                from_: Annotated[datetime | None, Parameter(query="from")] = None,
                to: datetime | None = None, cursor: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Usage and lifecycle records, newest first; ``next_cursor`` continues. ``from``/``to`` bound ``at``."""
    if not 1 <= limit <= 1000:
        raise ApiError(400, "VALIDATION_ERROR", "limit must be between 1 and 1000")
    where = AuditFilter(key_id=key_id, organization_id=_organization(request, organization_id), outcome=outcome,
                        kind=kind, start=from_, end=to)
    items, next_cursor = await services_of(request).audit.page(where, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


_MEDIA = {"ndjson": "application/x-ndjson", "csv": "text/csv"}


@get("/v1/audit/export", guards=[audit_guard])
async def export(request: Request, format: str = "ndjson",  # type: ignore[type-arg]
                 from_: Annotated[datetime | None, Parameter(query="from")] = None,
                 to: datetime | None = None) -> Stream:
    """The whole trail in [from, to), streamed, with a hash chain and a closing manifest."""
    from keyledger.services.audit.export import export_lines

    if format not in _MEDIA:
        raise ApiError(400, "VALIDATION_ERROR", "format must be ndjson or csv")
    if acting_admin(request).organization_id is not None:
        raise ApiError(403, "FORBIDDEN", "the export spans every organization; use a key without one")
    return Stream(export_lines(services_of(request).export, format, from_, to), media_type=_MEDIA[format],
                  headers={"Content-Disposition": f'attachment; filename="keyledger-audit.{format}"'})


AUDIT_ROUTES = [audit, export]
