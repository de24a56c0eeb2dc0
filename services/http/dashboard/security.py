"""The dashboard's Security page: the watch's findings of the admin's organization (all of them for a global
admin), open ones first by default, newest first, each with what was seen and an "Acknowledge" button; the
same button on a key's detail view (through :func:`acknowledge`). Same rules as ``/v1/findings``: org-scoped,
an unknown or foreign finding is 404, and every form carries the session's CSRF token."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from keyledger.domain.findings import KINDS, STATUSES
from keyledger.domain.key import KeyState
from keyledger.services.http.dashboard.findings_view import KIND_WORDS, evidence_words
from keyledger.services.http.dashboard.routes import BASE, PAGE_SIZE, MaybeQ, Q, _form, _page, _when, signed_in
from keyledger.services.http.ports import KeyDirectory
from keyledger.services.http.routes.findings import FindingId, visible_finding
from keyledger.services.storage.findings import FindingFilter, FindingTable

_BACK = re.compile(rf"^{BASE}/(security(\?[A-Za-z0-9_=&%-]*)?|keys/[0-9A-Za-z]{{12}})$")  # where a form may return


@get("/security", guards=[signed_in])
async def security_page(request: Request[Any, Any, Any], admin: NamedDependency[KeyState],
                        findings: NamedDependency[FindingTable], cache: NamedDependency[KeyDirectory],
                        status: Q = "open", kind: Q = "", cursor: MaybeQ = None) -> Template:
    """Security: the findings (open ones unless asked otherwise), newest first, a page at a time."""
    where = FindingFilter(organization_id=admin.organization_id, kind=kind if kind in KINDS else None,
                          status=status if status in STATUSES else None)
    items, next_cursor = await findings.page(where, PAGE_SIZE, cursor)
    keys = {finding.key_id: cache.get(finding.key_id) for finding in items}
    return _page(request, "security.html", findings=items, keys=keys, next_cursor=next_cursor, when=_when,
                 kind_words=KIND_WORDS, evidence=evidence_words, back=str(request.url.path) + (
                     f"?{request.url.query}" if request.url.query else ""),
                 filters={"status": status if status in STATUSES else "", "kind": kind if kind in KINDS else ""})


@post("/findings/{finding_id:str}/acknowledge", guards=[signed_in], status_code=303)
async def acknowledge(request: Request[Any, Any, Any], finding_id: FindingId, admin: NamedDependency[KeyState],
                      findings: NamedDependency[FindingTable], now: NamedDependency[datetime]) -> Redirect:
    """Acknowledge as ``POST /v1/findings/{id}/acknowledge`` does, then back to the page the form was on."""
    form = await _form(request)
    visible_finding(await findings.get(finding_id), admin, finding_id)
    await findings.acknowledge(finding_id, now, f"key:{admin.key_id}")
    back = form.get("back")
    return Redirect(back if isinstance(back, str) and _BACK.match(back) else f"{BASE}/security", status_code=303)


SECURITY_PAGES = [security_page, acknowledge]
