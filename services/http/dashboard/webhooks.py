"""The dashboard's Webhooks page: the endpoints the admin may see (its organization's; every one for a global
admin) with their status (a failing endpoint stands out, with "Enable" to resume it), the registration form
(the signing secret is shown on its answer only), an endpoint's latest deliveries, and delete. Same rules and
service as ``/v1/webhooks``; every form carries the session's CSRF token."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from keyledger.domain.errors import DomainError
from keyledger.domain.key import KeyState
from keyledger.domain.notices import NOTICE_TYPES
from keyledger.domain.recorded import Metadata
from keyledger.services.http.dashboard.routes import BASE, _form, _page, _status_of, _when, signed_in
from keyledger.services.http.routes.webhooks import EndpointId
from keyledger.services.webhooks.endpoints import WebhookService


def _list_page(request: Request[Any, Any, Any], endpoints: list[Any], code: int = 200, /,
               **context: Any) -> Template:
    return _page(request, "webhooks.html", code, endpoints=endpoints, types=NOTICE_TYPES, when=_when,
                 **{"created": None, "secret": None, "error": None, "form": {}, **context})


@get("/webhooks", guards=[signed_in])
async def webhooks_page(request: Request[Any, Any, Any], admin: NamedDependency[KeyState],
                        webhooks: NamedDependency[WebhookService]) -> Template:
    """Webhooks: every endpoint the admin sees, and the form to register one."""
    return _list_page(request, await webhooks.listed(admin.organization_id))


@post("/webhooks", guards=[signed_in], status_code=200)
async def create_webhook(request: Request[Any, Any, Any], admin: NamedDependency[KeyState],
                         webhooks: NamedDependency[WebhookService], metadata: NamedDependency[Metadata]) -> Template:
    """Register as ``POST /v1/webhooks`` does; the secret is on this answer only."""
    form = await _form(request)
    url, description = str(form.get("url") or "").strip(), str(form.get("description") or "").strip()
    chosen = [t for t in NOTICE_TYPES if form.get(f"type_{t}")]
    try:
        endpoint, secret = await webhooks.register(url, chosen or None, description,
                                                   admin_organization=admin.organization_id, created_by=metadata.actor)
    except DomainError as exc:
        return _list_page(request, await webhooks.listed(admin.organization_id), _status_of(exc), error=str(exc),
                          form={"url": url[:2000], "description": description[:500], "types": chosen})
    return _list_page(request, await webhooks.listed(admin.organization_id), created=endpoint, secret=secret)


@get("/webhooks/{endpoint_id:str}", guards=[signed_in])
async def webhook_detail(request: Request[Any, Any, Any], endpoint_id: EndpointId, admin: NamedDependency[KeyState],
                         webhooks: NamedDependency[WebhookService]) -> Template:
    """One endpoint: its status and its latest deliveries (attempts, last answer, next attempt)."""
    endpoint = await webhooks.get(endpoint_id, admin.organization_id)
    deliveries = await webhooks.deliveries(endpoint_id, admin.organization_id, limit=50)
    return _page(request, "webhook.html", endpoint=endpoint, deliveries=deliveries, when=_when)


@post("/webhooks/{endpoint_id:str}/enable", guards=[signed_in], status_code=303)
async def enable_webhook(request: Request[Any, Any, Any], endpoint_id: EndpointId, admin: NamedDependency[KeyState],
                         webhooks: NamedDependency[WebhookService]) -> Redirect:
    """Resume a failing (or disabled) endpoint from where it stopped."""
    await _form(request)
    await webhooks.set_status(endpoint_id, "active", admin.organization_id)
    return Redirect(f"{BASE}/webhooks/{endpoint_id}", status_code=303)


@post("/webhooks/{endpoint_id:str}/delete", guards=[signed_in], status_code=303)
async def delete_webhook(request: Request[Any, Any, Any], endpoint_id: EndpointId, admin: NamedDependency[KeyState],
                         webhooks: NamedDependency[WebhookService]) -> Redirect:
    """Remove the endpoint (and its deliveries)."""
    await _form(request)
    await webhooks.delete(endpoint_id, admin.organization_id)
    return Redirect(f"{BASE}/webhooks", status_code=303)


WEBHOOK_PAGES = [webhooks_page, create_webhook, webhook_detail, enable_webhook, delete_webhook]
