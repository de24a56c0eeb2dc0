"""The dashboard's Hygiene page: the hygiene report of the admin's organization (every key for a global admin),
each active key with its issues, filtered by issue, a page at a time; an overprivileged key's suggestion in
words, with an "Apply suggestion" button that sends the report's patch with the version the report showed,
through the key service as the edit form does (``If-Match``: a key changed since is refused and the
conflict shown, nothing applied). Every form carries the session's CSRF token."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, Response, Template

from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import ConcurrencyError, ValidationError
from keyledger.domain.hygiene import ISSUES
from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.services.http.dashboard.routes import BASE, PAGE_SIZE, Q, _form, _page, _when, signed_in
from keyledger.services.http.dashboard.words import access_words
from keyledger.services.http.ports import KeyDirectory
from keyledger.services.http.routes.keys import KeyId, visible_key
from keyledger.services.http.routes.reports import keys_of
from keyledger.services.keys.hygiene import HygieneReports
from keyledger.services.keys.hygiene_views import Grant, HygieneItem, Patch
from keyledger.services.keys.service import KeyService
from keyledger.services.keys.views import join_access

ISSUE_WORDS = {"unused": "Unused", "not_rotated": "Not rotated", "expiring": "Expiring",
               "no_expiry": "No expiry", "overprivileged": "Overprivileged"}
_patch_decoder = msgspec.json.Decoder(Patch)


def grant_words(grants: list[Grant], scopes: list[str] | None = None) -> list[str]:
    """``read:data on website site-a`` for every scope of ``grants`` (and of the global ``scopes``)."""
    entries = [AccessEntry(resource="global", scopes=tuple(scopes))] if scopes else []
    entries += [AccessEntry(resource=g.resource, id=g.id, scopes=tuple(g.scopes)) for g in grants]
    return access_words(tuple(entries))


async def _hygiene_page(request: Request[Any, Any, Any], admin: KeyState, cache: KeyDirectory,
                        hygiene: HygieneReports, now: datetime, issue: str, page: int, code: int = 200,
                        conflict: tuple[KeyState, HygieneItem | None] | None = None) -> Template:
    report = await hygiene.report(keys_of(cache, admin.organization_id), now, admin.organization_id, cache.position)
    rows = [item for item in report.items if not issue or issue in item.issues]
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    return _page(request, "hygiene.html", code, report=report, items=rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE],
                 total=len(rows), page=page, pages=pages, issue=issue, issues=ISSUES, issue_words=ISSUE_WORDS,
                 grant_words=grant_words, when=_when, conflict=conflict, patch_json=_patch_json)


def _patch_json(item: HygieneItem) -> str:
    assert item.suggestion is not None
    return msgspec.json.encode(item.suggestion.patch).decode()


@get("/hygiene", guards=[signed_in])
async def hygiene_page(request: Request[Any, Any, Any], admin: NamedDependency[KeyState],
                       cache: NamedDependency[KeyDirectory], hygiene: NamedDependency[HygieneReports],
                       now: NamedDependency[datetime], issue: Q = "",
                       page: Annotated[int, QueryParameter()] = 1) -> Template:
    """Hygiene: every active key with its issues (only those with ``issue``, when given), a page at a time."""
    return await _hygiene_page(request, admin, cache, hygiene, now, issue if issue in ISSUES else "", page)


@post("/keys/{key_id:str}/apply-suggestion", guards=[signed_in], status_code=303)
async def apply_suggestion(request: Request[Any, Any, Any], key_id: KeyId, admin: NamedDependency[KeyState],
                           cache: NamedDependency[KeyDirectory], keys: NamedDependency[KeyService],
                           hygiene: NamedDependency[HygieneReports], metadata: NamedDependency[Metadata],
                           now: NamedDependency[datetime]) -> Response[Any]:
    """Apply the suggestion the page showed, as ``PATCH /v1/keys/{id}`` with ``If-Match`` would: a key changed
    since the page was made is refused (409) and shown with the report's current view of it."""
    visible_key(cache, admin, key_id)
    form = await _form(request)
    version, raw = form.get("version"), form.get("patch")
    if not isinstance(version, str) or not version.isdigit() or not isinstance(raw, str):
        raise ValidationError("the suggestion form is incomplete; reload the page")
    try:
        patch = _patch_decoder.decode(raw)
    except msgspec.DecodeError:
        raise ValidationError("the suggestion form is malformed; reload the page") from None
    access = join_access(patch.scopes, [AccessEntry(resource=g.resource, id=g.id, scopes=tuple(g.scopes))
                                        for g in patch.access])
    try:
        await keys.change_access(key_id, access=access, expected_version=int(version), metadata=metadata,
                                 grantor=admin)
    except ConcurrencyError:
        current = visible_key(cache, admin, key_id)
        report = await hygiene.report([current], now, admin.organization_id, cache.position)
        return await _hygiene_page(request, admin, cache, hygiene, now, "", 1, 409,
                                   conflict=(current, report.items[0] if report.items else None))
    return Redirect(f"{BASE}/keys/{key_id}", status_code=303)


HYGIENE_PAGES = [hygiene_page, apply_suggestion]
