"""The dashboard's pages under ``/dashboard``: sign-in, the keys list, create, a key's detail view
(history, usage, as of), edit, rotate, revoke, and the audit trail with its export.

Every page but sign-in runs :func:`signed_in` first: the session's key is checked through the same
gate as the API's ``admin:apikeys`` calls (rate limit, usage event, revocation, expiry), and the
pages call the same key service, visibility rule (:func:`visible_key`) and audit queries as the API.
Every form carries the session's CSRF token.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from importlib import resources
from typing import Annotated, Any, Literal

import jinja2
from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import QueryParameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Stream, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from keyledger.domain.errors import Busy, ConcurrencyError, DomainError, Forbidden, KeyNotFound, ValidationError
from keyledger.domain.key import KeyState, fold
from keyledger.domain.recorded import Metadata
from keyledger.services.audit.export import export_lines
from keyledger.services.audit.notary import AuditNotary
from keyledger.services.http.auth import Gate
from keyledger.services.http.dashboard.charts import hourly_chart, sparkline
from keyledger.services.http.dashboard.deps import dependencies, sessions_of
from keyledger.services.http.dashboard.findings_view import KIND_WORDS, evidence_words, key_findings
from keyledger.services.http.dashboard.forms import (
    KeyForm,
    field_of,
    form_of_key,
    parse_time,
    read_key_form,
    with_blank_rows,
)
from keyledger.services.http.dashboard.sessions import COOKIE, MAX_AGE, SIGN_IN_COOKIE, Sessions, tokens_match
from keyledger.services.http.dashboard.shell import audit_verify_examples, verify_example
from keyledger.services.http.dashboard.words import (
    OUTCOMES,
    RESOURCE_TYPES,
    SCOPE_GROUPS,
    SCOPE_NAMES,
    STATUS_WORDS,
    access_words,
    event_words,
    resource_words,
    scopes_summary,
    status_of,
)
from keyledger.services.http.deps import ADMIN, gate_of
from keyledger.services.http.errors import ApiError
from keyledger.services.http.ports import AuditPages, HourlyUsage, KeyDirectory, LastUse
from keyledger.services.http.routes.keys import KeyId, visible_key
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.audit_queries import AuditFilter
from keyledger.services.storage.findings import FindingTable

Q = Annotated[str, QueryParameter()]
MaybeQ = Annotated[str | None, QueryParameter()]
ScopeQ = Annotated[str, QueryParameter(name="scope")]  # ``scope`` itself is a name Litestar reserves
RangeQ = Annotated[Literal["24h", "7d"], QueryParameter()]
FormatQ = Annotated[Literal["ndjson", "csv"], QueryParameter()]
BASE = "/dashboard"
CSRF = "dashboard_csrf"  # where the guard leaves the session's CSRF token, in the request's state
PAGE_SIZE = 25
GRACE_CHOICES = (("0", "None: the old secret stops now"), ("900", "15 minutes"), ("3600", "1 hour"),
                 ("86400", "24 hours"))
_STATUS = {400: "Check the form", 401: "Sign in", 403: "Not allowed", 404: "Not found", 408: "Too slow",
           409: "Conflict", 429: "Too many requests", 503: "Unavailable"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ENDED = {"ended": "Your session ended: the key you signed in with is no longer valid (revoked, expired, or "
                  "without admin:apikeys). Sign in again.",
         "rotated": "Your session ended because the key was rotated. Sign in with its new secret.",
         "out": "You are signed out."}


_DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (ValidationError, 400), (Forbidden, 403), (Busy, 429), (KeyNotFound, 404))


class SignInRequired(Exception):
    """No live session (or its key no longer authenticates): go to the sign-in page."""

    def __init__(self, why: str = "") -> None:
        super().__init__(why)
        self.why = why


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """The session's key must still authenticate as an ``admin:apikeys`` key, exactly as an API call's
    (same gate: rate limit, usage event); otherwise the session ends. A live session is a proven
    credential: a failure lockout of its address does not refuse it."""
    sessions = sessions_of(connection)
    session = await sessions.get(connection.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired()
    try:
        admin = await gate_of(connection).authenticate(connection, ("admin:apikeys",), presented=session.key,
                                                        proven=True)
    except ApiError as exc:
        if exc.status in (401, 403):
            await sessions.end(session.id)
            raise SignInRequired("ended") from None
        raise
    if admin.start != session.start:  # rotated since sign-in (even if the old secret is in its grace period)
        await sessions.end(session.id)
        raise SignInRequired("rotated")
    connection.state[ADMIN] = admin
    connection.state[CSRF] = session.csrf


async def _form(request: Request[Any, Any, Any]) -> Any:
    """The posted form, once its CSRF token is this session's (else 403, nothing done)."""
    form = await request.form()
    if not tokens_match(form.get("csrf_token"), request.state[CSRF]):
        raise ApiError(403, "FORBIDDEN", "This form has expired or did not come from this dashboard. "
                                         "Reload the page and try again.")
    return form


def _cookie(request: Request[Any, Any, Any], value: str, name: str = COOKIE,
            max_age: int = int(MAX_AGE.total_seconds())) -> Cookie:
    """HttpOnly, SameSite=Strict, only for /dashboard, Secure when the request came over TLS."""
    return Cookie(key=name, value=value, path=BASE, httponly=True, samesite="strict",
                  secure=request.url.scheme == "https", max_age=max_age)


def _page(request: Request[Any, Any, Any], name: str, code: int = 200, /, **context: Any) -> Template:
    """A page with what every page needs: the signed-in admin and the CSRF token."""
    admin: KeyState | None = request.state.get(ADMIN)
    return Template(template_name=name, status_code=code, context={
        "admin": admin, "csrf": request.state.get(CSRF, ""), "base": BASE, **context})


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "—"


def _local(value: datetime | None) -> str:
    return f"{value:%Y-%m-%dT%H:%M}" if value is not None else ""


# ---- sign-in / sign-out -------------------------------------------------------------------------------------


@get("/")
async def home() -> Redirect:
    """The dashboard starts at Settings → API Keys."""
    return Redirect(f"{BASE}/keys", status_code=303)


def _sign_in_form(request: Request[Any, Any, Any], code: int = 200, /, **context: Any) -> Template:
    """The sign-in form with a fresh CSRF token, also set as a cookie (double submit: no server state
    for visitors who have not signed in)."""
    token = secrets.token_urlsafe(32)
    request.state[CSRF] = token
    page = _page(request, "sign_in.html", code, **{"message": None, "error": None, **context})
    page.cookies.append(_cookie(request, token, name=SIGN_IN_COOKIE, max_age=3600))
    return page


@get("/sign-in")
async def sign_in_page(request: Request[Any, Any, Any], why: MaybeQ = None) -> Template:
    """The sign-in form."""
    return _sign_in_form(request, message=ENDED.get(why or ""))


@post("/sign-in", status_code=303)
async def sign_in(request: Request[Any, Any, Any], gate: NamedDependency[Gate],
                  sessions: NamedDependency[Sessions]) -> Response[Any]:
    """Check the key as the API would (``admin:apikeys``); on success a new session holds it."""
    form = await request.form()
    if not tokens_match(form.get("csrf_token"), request.cookies.get(SIGN_IN_COOKIE, "")):
        return _sign_in_form(request, 400, error="The sign-in form expired. Please try again.")
    key = form.get("api_key")
    key = key.strip() if isinstance(key, str) else ""
    if not key:
        return _sign_in_form(request, 400, error="Enter an API key.")
    try:
        admin = await gate.authenticate(request, ("admin:apikeys",), presented=key[:4096])
    except ApiError as exc:
        error = ("Too many attempts. Wait a minute and try again." if exc.status == 429 else
                 f"This key cannot sign in here: {exc.message}" if "allowed_networks" in exc.message else
                 "This key cannot sign in: it must be a valid, active key holding admin:apikeys.")
        return _sign_in_form(request, exc.status, error=error)
    await sessions.end(request.cookies.get(COOKIE))  # whatever session this browser had: a new id, always
    session = await sessions.sign_in(key, admin.key_id, admin.start)
    response: Response[Any] = Redirect(f"{BASE}/keys", status_code=303)
    response.cookies.append(_cookie(request, session.id))
    response.cookies.append(_cookie(request, "", name=SIGN_IN_COOKIE, max_age=0))
    return response


@post("/sign-out", guards=[signed_in], status_code=303)
async def sign_out(request: Request[Any, Any, Any], sessions: NamedDependency[Sessions]) -> Redirect:
    """End the session."""
    await _form(request)
    await sessions.end(request.cookies.get(COOKIE))
    response = Redirect(f"{BASE}/sign-in?why=out", status_code=303)
    response.cookies.append(_cookie(request, "", max_age=0))
    return response


# ---- keys list ----------------------------------------------------------------------------------------------


def _newest_first(state: KeyState) -> tuple[datetime, str]:
    return state.created_at, state.key_id


def _visible_states(cache: KeyDirectory, admin: KeyState) -> list[KeyState]:
    return cache.states(admin.organization_id)


@get("/keys", guards=[signed_in])
async def keys_list(request: Request[Any, Any, Any], admin: NamedDependency[KeyState],
                    cache: NamedDependency[KeyDirectory], last_used: NamedDependency[LastUse],
                    usage_counts: NamedDependency[HourlyUsage], now: NamedDependency[datetime], q: Q = "",
                    status: Q = "", org: Q = "", scope_: ScopeQ = "",
                    page: Annotated[int, QueryParameter()] = 1) -> Template:
    """Settings → API Keys: search, filters, pages; each key with its status and last 24 hours."""
    visible = _visible_states(cache, admin)
    organizations = sorted({s.organization_id for s in visible if s.organization_id})
    needle = q.strip().lower()[:200]
    def keep(state: KeyState) -> bool:
        if needle and needle not in state.name.lower() and needle not in state.start.lower() \
                and needle not in state.key_id.lower() and needle not in state.tags \
                and needle not in (state.owner_id or "").lower():
            return False
        if status:
            key_status, soon = status_of(state, now)
            if not (status == key_status or (status == "expiring" and soon)):
                return False
        if org and state.organization_id != org:
            return False
        return not scope_ or any(scope_ in entry.scopes for entry in state.access)

    rows = [s for s in visible if keep(s)] if (needle or status or org or scope_) else visible
    rows.sort(key=_newest_first, reverse=True)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    shown = rows[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    ids = [state.key_id for state in shown]
    used = await last_used.lookup(ids)
    counts = await _hourly(usage_counts, ids, now - timedelta(hours=24), now)
    items = [{"state": state, "status": status_of(state, now)[0], "soon": status_of(state, now)[1],
              "scopes": scopes_summary(state), "last_used": used.get(state.key_id),
              "spark": sparkline(counts.get(state.key_id, []), now)} for state in shown]
    return _page(request, "keys.html", items=items, total=len(rows), page=page, pages=pages,
                 organizations=organizations, scope_names=SCOPE_NAMES,
                 filters={"q": q[:200], "status": status, "org": org, "scope": scope_})


async def _hourly(counts: HourlyUsage, ids: list[str], since: datetime,
                  until: datetime) -> dict[str, list[tuple[datetime, str, int]]]:
    if not ids:
        return {}
    return await counts.hourly(ids, since - timedelta(hours=1), until + timedelta(hours=1))


# ---- create -------------------------------------------------------------------------------------------------


def _form_page(request: Request[Any, Any, Any], name: str, form: KeyForm, code: int = 200, /,
               **context: Any) -> Template:
    return _page(request, name, code, form=with_blank_rows(form), scope_groups=SCOPE_GROUPS,
                 resource_types=RESOURCE_TYPES, **context)


@get("/keys/new", guards=[signed_in])
async def new_key(request: Request[Any, Any, Any]) -> Template:
    """The “Create API Key” form."""
    return _form_page(request, "create.html", KeyForm(errors={}))


@post("/keys", guards=[signed_in], status_code=200)
async def create_key(request: Request[Any, Any, Any], keys: NamedDependency[KeyService],
                     admin: NamedDependency[KeyState], metadata: NamedDependency[Metadata],
                     now: NamedDependency[datetime]) -> Template:
    """Create the key as ``POST /v1/keys`` does; the secret is on this response only."""
    form = read_key_form(await _form(request))
    expires, limit = form.expiry(), form.limit()
    organization = admin.organization_id or (form.organization_id.strip() or None)
    if form.errors:
        return _form_page(request, "create.html", form, 400)
    try:
        issued = await keys.create(form.name, organization_id=organization, access=form.access(), expires_at=expires,
                                   rate_limit=limit, metadata=metadata, grantor=admin,
                                   description=form.description, tags=form.tag_list(),
                                   allowed_networks=form.network_list())
    except DomainError as exc:
        form.errors[field_of(str(exc))] = str(exc)
        return _form_page(request, "create.html", form, _status_of(exc))
    return _secret_page(request, issued.state, issued.token, now, created=True)


def _status_of(exc: DomainError) -> int:
    """The status the API answers ``exc`` with."""
    return next((status for kind, status in _DOMAIN_STATUS if isinstance(exc, kind)), 409)


def _secret_page(request: Request[Any, Any, Any], state: KeyState, secret: str, now: datetime,
                 created: bool) -> Template:
    return _page(request, "secret.html", state=state, secret=secret, created=created, when=_when,
                 access=access_words(state.access), status=status_of(state, now)[0],
                 example=verify_example(state, secret, str(request.base_url).rstrip("/")))


# ---- detail -------------------------------------------------------------------------------------------------


@get("/keys/{key_id:str}", guards=[signed_in])
async def key_detail(request: Request[Any, Any, Any], key_id: KeyId, admin: NamedDependency[KeyState],
                     cache: NamedDependency[KeyDirectory], keys: NamedDependency[KeyService],
                     last_used: NamedDependency[LastUse], audit: NamedDependency[AuditPages],
                     usage_counts: NamedDependency[HourlyUsage], now: NamedDependency[datetime],
                     finding_table: NamedDependency[FindingTable | None], range: RangeQ = "24h", outcome: Q = "",
                     from_: Q = "", to: Q = "", cursor: MaybeQ = None, as_of: Q = "") -> Template:
    """Every field, access in words, history, usage (chart and events) and the key as of a past time."""
    visible_key(cache, admin, key_id)
    state, events = await keys.history(key_id)
    errors: dict[str, str] = {}
    start, end = parse_time(from_, "from", errors), parse_time(to, "to", errors)
    moment = parse_time(as_of, "as_of", errors)
    hours = 24 if range == "24h" else 168
    counts = await _hourly(usage_counts, [key_id], now - timedelta(hours=hours), now)
    chart, totals = hourly_chart(counts.get(key_id, []), now, hours)
    where = AuditFilter(key_id=key_id, kind="usage", outcome=outcome if outcome in OUTCOMES else None,
                        start=start, end=end)
    try:
        usage, next_cursor = await audit.page(where, PAGE_SIZE, cursor)
    except DomainError as exc:
        errors["cursor"] = str(exc)
        usage, next_cursor = [], None
    past = None
    if moment is not None:
        folded = fold(r.event for r in events if r.event.at <= moment)
        past = {"at": moment, "state": folded,
                "status": STATUS_WORDS[folded.status(moment)] if folded else None,
                "access": access_words(folded.access) if folded else [],
                "previous": folded.previous_secret_valid(moment) if folded else False}
    key_status, soon = status_of(state, now)
    used = (await last_used.lookup([key_id])).get(key_id)
    history = [{"recorded": r, "words": event_words(r)} for r in reversed(events)]
    findings = await key_findings(finding_table, admin, key_id)
    return _page(request, "key.html", 400 if errors else 200, state=state, status=key_status, soon=soon,
                 last_used=used, when=_when, access=access_words(state.access), history=history, chart=chart,
                 totals=totals, range=range, usage=usage, next_cursor=next_cursor, outcomes=OUTCOMES, past=past,
                 errors=errors, filters={"outcome": outcome, "from": from_[:40], "to": to[:40], "as_of": as_of[:40]},
                 resource_words=resource_words, findings=findings, kind_words=KIND_WORDS, evidence=evidence_words)


# ---- edit ---------------------------------------------------------------------------------------------------


@get("/keys/{key_id:str}/edit", guards=[signed_in])
async def edit_page(request: Request[Any, Any, Any], key_id: KeyId, admin: NamedDependency[KeyState],
                    cache: NamedDependency[KeyDirectory], keys: NamedDependency[KeyService]) -> Template:
    """The edit form, filled in with the key's current values and version."""
    visible_key(cache, admin, key_id)
    state, _ = await keys.history(key_id)
    return _form_page(request, "edit.html", form_of_key(state), state=state, conflict=None)


@post("/keys/{key_id:str}/edit", guards=[signed_in], status_code=200)
async def edit_key(request: Request[Any, Any, Any], key_id: KeyId, admin: NamedDependency[KeyState],
                   cache: NamedDependency[KeyDirectory], keys: NamedDependency[KeyService],
                   metadata: NamedDependency[Metadata]) -> Response[Any]:
    """Apply the edit as ``PATCH /v1/keys/{id}`` with ``If-Match``: a stale form is refused (409) and
    shown beside the key's current values, never applied over them."""
    visible_key(cache, admin, key_id)
    form = read_key_form(await _form(request))
    limit = form.limit()
    current, _ = await keys.history(key_id)
    if form.errors:
        return _form_page(request, "edit.html", form, 400, state=current, conflict=None)
    if limit is None and current.rate_limit is not None:
        limit = 0  # the field was cleared: back to the tier's limit
    try:
        await keys.change_access(key_id, access=form.access(), name=form.name, description=form.description,
                                 tags=form.tag_list(), allowed_networks=form.network_list(), rate_limit=limit,
                                 expected_version=form.expected_version(),
                                 metadata=metadata, grantor=admin)
    except ConcurrencyError:
        latest, _ = await keys.history(key_id)
        form.version = str(latest.version)  # submitting again applies these values over the current ones
        form.errors["general"] = ("This key was changed by someone else since you opened this form. Nothing was "
                                  "saved. Its current values are shown below; submit again to replace them.")
        return _form_page(request, "edit.html", form, 409, state=latest, conflict=form_of_key(latest),
                          conflict_access=access_words(latest.access))
    except DomainError as exc:
        form.errors[field_of(str(exc))] = str(exc)
        return _form_page(request, "edit.html", form, _status_of(exc), state=current, conflict=None)
    return Redirect(f"{BASE}/keys/{key_id}", status_code=303)


# ---- rotate / revoke ----------------------------------------------------------------------------------------


@get("/keys/{key_id:str}/rotate", guards=[signed_in])
async def rotate_page(request: Request[Any, Any, Any], key_id: KeyId, admin: NamedDependency[KeyState],
                      cache: NamedDependency[KeyDirectory]) -> Template:
    """Choose the grace period of the old secret."""
    state = visible_key(cache, admin, key_id)
    return _page(request, "rotate.html", state=state, grace_choices=GRACE_CHOICES, error=None)


@post("/keys/{key_id:str}/rotate", guards=[signed_in], status_code=200)
async def rotate_key(request: Request[Any, Any, Any], key_id: KeyId, admin: NamedDependency[KeyState],
                     cache: NamedDependency[KeyDirectory], keys: NamedDependency[KeyService],
                     metadata: NamedDependency[Metadata], now: NamedDependency[datetime]) -> Template:
    """Rotate as ``POST /v1/keys/{id}/rotate``; the new secret is on this response only."""
    state = visible_key(cache, admin, key_id)
    form = await _form(request)
    grace = form.get("grace_seconds")
    version = form.get("version")
    if grace not in {value for value, _ in GRACE_CHOICES}:
        return _page(request, "rotate.html", 400, state=state, grace_choices=GRACE_CHOICES,
                     error="Choose a grace period.")
    try:
        issued = await keys.rotate(key_id, grace_seconds=int(grace),
                                   expected_version=int(version) if str(version).isdigit() else None,
                                   metadata=metadata, grantor=admin)
    except DomainError as exc:
        return _page(request, "rotate.html", _status_of(exc), state=state, grace_choices=GRACE_CHOICES,
                     error=_action_error(exc))
    return _secret_page(request, issued.state, issued.token, now, created=False)


def _action_error(exc: DomainError) -> str:
    if isinstance(exc, ConcurrencyError):
        return "This key was changed since you opened this page. Nothing was done; review it and try again."
    return str(exc)


@get("/keys/{key_id:str}/revoke", guards=[signed_in])
async def revoke_page(request: Request[Any, Any, Any], key_id: KeyId, admin: NamedDependency[KeyState],
                      cache: NamedDependency[KeyDirectory]) -> Template:
    """Confirm the revocation by typing the key's name."""
    state = visible_key(cache, admin, key_id)
    return _page(request, "revoke.html", state=state, error=None)


@post("/keys/{key_id:str}/revoke", guards=[signed_in], status_code=303)
async def revoke_key(request: Request[Any, Any, Any], key_id: KeyId, admin: NamedDependency[KeyState],
                     cache: NamedDependency[KeyDirectory], keys: NamedDependency[KeyService],
                     metadata: NamedDependency[Metadata]) -> Response[Any]:
    """Revoke as ``POST /v1/keys/{id}/revoke`` once the typed name matches."""
    state = visible_key(cache, admin, key_id)
    form = await _form(request)
    typed, reason, version = form.get("confirm_name"), form.get("reason"), form.get("version")
    if not isinstance(typed, str) or typed.strip() != state.name:
        return _page(request, "revoke.html", 400, state=state, error="The name you typed is not this key's name.")
    try:
        await keys.revoke(key_id, reason=reason[:500] if isinstance(reason, str) else "",
                          expected_version=int(version) if str(version).isdigit() else None, metadata=metadata)
    except DomainError as exc:
        return _page(request, "revoke.html", _status_of(exc), state=state, error=_action_error(exc))
    return Redirect(f"{BASE}/keys/{key_id}", status_code=303)


# ---- audit --------------------------------------------------------------------------------------------------


@get("/audit", guards=[signed_in])
async def audit_page(request: Request[Any, Any, Any], admin: NamedDependency[KeyState],
                     audit: NamedDependency[AuditPages], key_id: Q = "", outcome: Q = "", kind: Q = "",
                     from_: Q = "", to: Q = "", cursor: MaybeQ = None) -> Template:
    """The audit trail of the admin's organization (all of it for a global admin), filtered, newest first."""
    errors: dict[str, str] = {}
    start, end = parse_time(from_, "from", errors), parse_time(to, "to", errors)
    where = AuditFilter(key_id=key_id.strip()[:100] or None, organization_id=admin.organization_id,
                        outcome=outcome.strip()[:40] or None, kind=kind if kind in ("usage", "lifecycle") else None,
                        start=start, end=end)
    try:
        records, next_cursor = await audit.page(where, 50, cursor)
    except DomainError as exc:
        errors["cursor"] = str(exc)
        records, next_cursor = [], None
    return _page(request, "audit.html", 400 if errors else 200, records=records, next_cursor=next_cursor,
                 errors=errors, when=_when, origin=str(request.base_url).rstrip("/"),
                 examples=audit_verify_examples(str(request.base_url).rstrip("/")),
                 outcomes=(*OUTCOMES, "OK"), filters={"key_id": key_id[:100], "outcome": outcome[:40], "kind": kind,
                                                      "from": from_[:40], "to": to[:40]})


@get("/audit/export", guards=[signed_in])
async def audit_export(admin: NamedDependency[KeyState], export: NamedDependency[ExportSource],
                       notary: NamedDependency[AuditNotary], now: NamedDependency[datetime],
                       format: FormatQ = "ndjson", from_: Q = "", to: Q = "") -> Stream:
    """``GET /v1/audit/export`` for the browser: the same signed export, refused to organization admins."""
    if admin.organization_id is not None:
        raise ApiError(403, "FORBIDDEN", "The export spans every organization; sign in with a key without one.")
    errors: dict[str, str] = {}
    start, end = parse_time(from_, "from", errors), parse_time(to, "to", errors)
    if errors:
        raise ApiError(400, "VALIDATION_ERROR", next(iter(errors.values())))
    key = await notary.signing_key()
    try:
        lines = export_lines(export, format, start, end, key=key, anchor=notary.record, generated_at=now)
    except ValueError as exc:
        raise ApiError(400, "VALIDATION_ERROR", str(exc)) from None
    media = "application/x-ndjson" if format == "ndjson" else "text/csv"
    return Stream(lines, media_type=media,
                  headers={"Content-Disposition": f'attachment; filename="keyledger-audit.{format}"'})


# ---- errors, headers, the router ----------------------------------------------------------------------------


def _to_sign_in(request: Request[Any, Any, Any], exc: SignInRequired) -> Response[Any]:
    response: Response[Any] = Redirect(f"{BASE}/sign-in" + (f"?why={exc.why}" if exc.why else ""), status_code=303)
    response.headers.update(SECURITY_HEADERS)
    if exc.why:
        response.cookies.append(_cookie(request, "", max_age=0))
    return response


def _error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, ApiError):
        status, message = exc.status, exc.message
    elif isinstance(exc, KeyNotFound):
        status, message = 404, str(exc)
    elif isinstance(exc, DomainError):
        status, message = _status_of(exc), str(exc)
    elif isinstance(exc, HTTPException):  # e.g. a query parameter of the wrong type
        status, message = exc.status_code, "That address is not one this dashboard understands."
    else:
        status, message = 500, "Something went wrong."
    page = _page(request, "error.html", status, title=_STATUS.get(status, "Error"), message=message)
    page.headers.update(SECURITY_HEADERS)
    if isinstance(exc, ApiError) and exc.headers:  # Retry-After; Connection: close after a body that came too late
        page.headers.update(exc.headers)
    return page


async def _headers(response: Response[Any]) -> Response[Any]:
    response.headers.update(SECURITY_HEADERS)
    return response


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja over the packaged templates, autoescaped."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("keyledger.services.http.dashboard", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = _when
    env.filters["local"] = _local
    env.globals["status_words"] = STATUS_WORDS
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


def dashboard_router(*pages: BaseRouteHandler) -> Router:
    """Every dashboard page under ``/dashboard`` (static files under ``/dashboard/static``), with the
    dashboard's own providers beside the app's; ``pages``: those of modules that build on this one (e.g.
    ``security``)."""
    static_dir = resources.files("keyledger.services.http.dashboard").joinpath("static")
    static = create_static_files_router(path="/static", directories=[str(static_dir)], name="dashboard-static",
                                        include_in_schema=False)
    handlers = [home, sign_in_page, sign_in, sign_out, keys_list, new_key, create_key, key_detail, edit_page, edit_key,
                rotate_page, rotate_key, revoke_page, revoke_key, audit_page, audit_export]
    return Router(path=BASE, route_handlers=[*handlers, *pages, static], dependencies=dependencies(),
                  include_in_schema=False, after_request=_headers,
                  exception_handlers={SignInRequired: _to_sign_in, ApiError: _error_page, DomainError: _error_page,
                                      HTTPException: _error_page})

