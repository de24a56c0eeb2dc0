"""``/v1/audit``: the audit trail for ``read:export`` or ``admin:apikeys`` keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation
from litestar.params import QueryParameter
from litestar.response import Stream

from keyledger.domain.key import KeyState
from keyledger.services.audit.export import export_lines
from keyledger.services.audit.notary import AuditNotary
from keyledger.services.clock import as_utc
from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.guards import SECURITY, audit_guard
from keyledger.services.http.ports import AuditPages
from keyledger.services.http.schemas import AuditPage, AuditPublicKey, AuditRecord
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.audit_queries import AuditFilter

From = Annotated[datetime | None, QueryParameter(name="from", description="Only records at or after this time")]
To = Annotated[datetime | None, QueryParameter(description="Only records before this time")]
# no NUL: Postgres cannot hold one in text, so a filter with one is a 400, never a database error
Query = Annotated[str | None, QueryParameter(pattern=r"^[^\x00]*$", max_length=200)]
KeyId = Annotated[str | None, QueryParameter(pattern=r"^ed25519:[0-9a-f]{16}$", description=(
    "An earlier signing key's id (a manifest's key_id); default: the key that signs now"))]
_MEDIA = {"ndjson": "application/x-ndjson", "csv": "text/csv"}
_EXPORTED = ResponseSpec(data_container=str, media_type=_MEDIA["ndjson"], generate_examples=False, description=(
    "The records as NDJSON (format=ndjson) or CSV (format=csv, text/csv), hash-chained, closed by a manifest"))


@dataclass
class _ExportOperation(Operation):
    """The export's 200 in both of its media types (a ``ResponseSpec`` names only one)."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content:
            schema = next(iter(ok.content.values())).schema
            ok.content = {media: OpenAPIMediaType(schema=schema) for media in _MEDIA.values()}


def _in_range(moment: datetime | None, name: str) -> datetime | None:
    """A ``from``/``to`` bound in UTC; 400 when its UTC instant falls outside the years 1 to 9999."""
    try:
        return None if moment is None else as_utc(moment)
    except ValueError as exc:
        raise ApiError(400, "VALIDATION_ERROR", f"{name}: {exc}") from None


def _organization(admin: KeyState, asked: str | None) -> str | None:
    """An organization's key sees only its organization's records."""
    own = admin.organization_id
    if own is not None and asked not in (None, own):
        raise ApiError(403, "FORBIDDEN", "Insufficient permissions")
    return own or asked


@get("/v1/audit", guards=[audit_guard], security=SECURITY, responses=error_responses(400, 401, 403, 429, 503))
async def audit_records(admin: NamedDependency[KeyState], audit: NamedDependency[AuditPages],
                        key_id: Query = None, organization_id: Query = None, outcome: Query = None,
                        kind: Query = None, from_: From = None, to: To = None, cursor: Query = None,
                        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100) -> AuditPage:
    """Usage and lifecycle records, newest first; ``next_cursor`` continues. ``from``/``to`` bound ``at``."""
    where = AuditFilter(key_id=key_id, organization_id=_organization(admin, organization_id), outcome=outcome,
                        kind=kind, start=_in_range(from_, "from"), end=_in_range(to, "to"))
    items, next_cursor = await audit.page(where, limit, cursor)
    return AuditPage(items=msgspec.convert(items, list[AuditRecord]), next_cursor=next_cursor)


@get("/v1/audit/export", guards=[audit_guard], security=SECURITY, operation_class=_ExportOperation,
     responses={200: _EXPORTED, **error_responses(400, 401, 403, 429, 503)})
async def export_audit(admin: NamedDependency[KeyState], export: NamedDependency[ExportSource],
                       notary: NamedDependency[AuditNotary], now: NamedDependency[datetime],
                       format: Annotated[Literal["ndjson", "csv"],
                                         QueryParameter()] = "ndjson", from_: From = None, to: To = None) -> Stream:
    """The whole trail in [from, to), streamed, with a hash chain and a closing manifest signed by the server's
    key (``GET /v1/audit/public-key``); the export's chain head is recorded before the manifest is sent."""
    if admin.organization_id is not None:
        raise ApiError(403, "FORBIDDEN", "the export spans every organization; use a key without one")
    from_, to = _in_range(from_, "from"), _in_range(to, "to")
    key = await notary.signing_key()
    try:
        lines = export_lines(export, format, from_, to, key=key, anchor=notary.record, generated_at=now)
    except ValueError as exc:  # a reversed range
        raise ApiError(400, "VALIDATION_ERROR", str(exc)) from None
    return Stream(lines, media_type=_MEDIA[format],
                  headers={"Content-Disposition": f'attachment; filename="keyledger-audit.{format}"'})


@get("/v1/audit/public-key", responses=error_responses(400, 404, 503))
async def audit_public_key(notary: NamedDependency[AuditNotary], key_id: KeyId = None) -> AuditPublicKey:
    """The Ed25519 public key that checks export manifests; public, so no credentials are needed. With
    ``key_id``, an earlier key of this server (404 when it never had it)."""
    key = await notary.public_key(key_id)
    if key is None:
        raise ApiError(404, "NOT_FOUND", f"no audit signing key {key_id}")
    return AuditPublicKey(key_id=key.key_id, public_key=key.base64)


AUDIT_ROUTES = [audit_records, export_audit, audit_public_key]
