"""``/v1/findings``: the watch's suspicious-activity findings, and acknowledging one (needs ``admin:apikeys``).

An admin key that belongs to an organization sees and acknowledges only that organization's findings (another
organization's answer 404, as its keys do).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from keyledger.domain.findings import KINDS, STATUSES, Finding
from keyledger.domain.key import KeyState
from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.guards import SECURITY, admin_guard
from keyledger.services.storage.findings import FindingFilter, FindingTable

FindingId = Annotated[str, PathParameter(description="The finding id (a UUID)", max_length=64)]
KeyIdQuery = Annotated[str | None, QueryParameter(description="Only this key's findings", pattern=r"^[0-9A-Za-z]{12}$")]
KindQuery = Annotated[str | None, QueryParameter(description=f"Only this kind: {', '.join(KINDS)}", max_length=40)]
StatusQuery = Annotated[str | None, QueryParameter(description=f"Only this status: {', '.join(STATUSES)}",
                                                   max_length=20)]
Cursor = Annotated[str | None, QueryParameter(description="next_cursor of the previous page", max_length=200,
                                              pattern=r"^[A-Za-z0-9_-]*$")]


class FindingPage(msgspec.Struct, kw_only=True):
    """Findings, newest (``first_seen``) first; ``next_cursor`` (null on the last page) continues."""

    items: list[Finding]
    next_cursor: str | None


def visible_finding(finding: Finding | None, admin: KeyState, finding_id: str) -> Finding:
    """The finding ``admin`` may see (an organization's admin: only its organization's); else 404."""
    if finding is None or (admin.organization_id is not None and finding.organization_id != admin.organization_id):
        raise ApiError(404, "NOT_FOUND", f"finding {finding_id[:64]} not found")
    return finding


@get("/v1/findings", guards=[admin_guard], security=SECURITY, responses=error_responses(400, 401, 403, 429, 503))
async def list_findings(admin: NamedDependency[KeyState], findings: NamedDependency[FindingTable],
                        key_id: KeyIdQuery = None, kind: KindQuery = None, status: StatusQuery = None,
                        cursor: Cursor = None, limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50) -> FindingPage:
    """Findings of suspicious activity, newest first, ``limit`` (1-100) at a time; filter by key, kind, status."""
    where = FindingFilter(organization_id=admin.organization_id, key_id=key_id, kind=kind, status=status)
    items, next_cursor = await findings.page(where, limit, cursor)
    return FindingPage(items=items, next_cursor=next_cursor)


@post("/v1/findings/{finding_id:str}/acknowledge", status_code=200, guards=[admin_guard], security=SECURITY,
      responses=error_responses(400, 401, 403, 404, 429, 503))
async def acknowledge_finding(finding_id: FindingId, admin: NamedDependency[KeyState],
                              findings: NamedDependency[FindingTable], now: NamedDependency[datetime]) -> Finding:
    """Mark a finding acknowledged (seen and dealt with); acknowledging it again changes nothing."""
    visible_finding(await findings.get(finding_id), admin, finding_id)
    return visible_finding(await findings.acknowledge(finding_id, now, f"key:{admin.key_id}"), admin, finding_id)


FINDING_ROUTES = [list_findings, acknowledge_finding]
