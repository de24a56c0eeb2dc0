"""``/v1/webhooks``: register, list, show, delete, enable and disable webhook endpoints, and list their
deliveries (needs ``admin:apikeys``).

An organization's admin registers endpoints that receive only its organization's events, and sees and
manages only those; a global admin's endpoints receive every organization's (or one organization's, when it
names one). The signing secret is in the 201 answer of the registration, and nowhere else, ever.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.guards import SECURITY, admin_guard
from keyledger.services.storage.webhooks import Delivery, Endpoint
from keyledger.services.webhooks.endpoints import WebhookService

EndpointId = Annotated[str, PathParameter(description="The endpoint id (wh_...)")]
ONE_ENDPOINT = error_responses(400, 401, 403, 404, 429, 503)  # what a call naming one endpoint may answer


class CreateWebhookRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/webhooks``: where to send, which event types (none: every type), and a note."""

    url: Annotated[str, msgspec.Meta(max_length=2000)]
    events: list[Annotated[str, msgspec.Meta(max_length=100)]] | None = None
    description: Annotated[str, msgspec.Meta(max_length=500)] = ""
    organization_id: str | None = None  # a global admin's endpoint for one organization (default: every one)


class Webhook(msgspec.Struct, kw_only=True):
    """An endpoint as the API shows it (``status``: active, failing or disabled)."""

    id: str
    url: str
    events: list[str]
    description: str
    organization_id: str | None
    status: str
    created_at: datetime


class WebhookWithSecret(Webhook, kw_only=True):
    """The registration's answer: the only place the signing secret (``whsec_...``) appears."""

    secret: str


class WebhookList(msgspec.Struct, kw_only=True):
    """Every endpoint the caller may see."""

    items: list[Webhook]


class WebhookDelivery(msgspec.Struct, kw_only=True):
    """One notice's delivery to one endpoint (``event_id`` is the ``webhook-id`` header it was sent with)."""

    event_id: str
    type: str
    position: int
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class DeliveryPage(msgspec.Struct, kw_only=True):
    """Deliveries, newest first; ``next_cursor`` continues."""

    items: list[WebhookDelivery]
    next_cursor: str | None


def webhook_of(endpoint: Endpoint) -> Webhook:
    """The API's view of ``endpoint``."""
    return Webhook(id=endpoint.id, url=endpoint.url, events=list(endpoint.event_types),
                   description=endpoint.description, organization_id=endpoint.organization_id, status=endpoint.status,
                   created_at=endpoint.created_at)


def delivery_of(delivery: Delivery) -> WebhookDelivery:
    """The API's view of ``delivery``."""
    return WebhookDelivery(event_id=delivery.message_id, type=delivery.type, position=delivery.position,
                           attempts=delivery.attempts, last_status_code=delivery.last_status,
                           last_error=delivery.last_error, next_attempt_at=delivery.next_attempt_at,
                           delivered_at=delivery.delivered_at)


@post("/v1/webhooks", status_code=201, responses=error_responses(400, 401, 403, 413, 429, 503), guards=[admin_guard],
      security=SECURITY)
async def create_webhook(data: JSONBody[CreateWebhookRequest], webhooks: NamedDependency[WebhookService],
                         admin: NamedDependency[KeyState], metadata: NamedDependency[Metadata]) -> WebhookWithSecret:
    """Register an endpoint: its URL must reach a public address (400 otherwise, saying why)."""
    endpoint, secret = await webhooks.register(data.url, data.events, data.description,
                                               admin_organization=admin.organization_id,
                                               organization_id=data.organization_id, created_by=metadata.actor)
    return WebhookWithSecret(**msgspec.structs.asdict(webhook_of(endpoint)), secret=secret)


@get("/v1/webhooks", responses=error_responses(401, 403, 429, 503), guards=[admin_guard], security=SECURITY)
async def list_webhooks(webhooks: NamedDependency[WebhookService], admin: NamedDependency[KeyState]) -> WebhookList:
    """The endpoints the caller may see (never a secret)."""
    return WebhookList(items=[webhook_of(e) for e in await webhooks.listed(admin.organization_id)])


@get("/v1/webhooks/{endpoint_id:str}", responses=ONE_ENDPOINT, guards=[admin_guard],
     security=SECURITY)
async def get_webhook(endpoint_id: EndpointId, webhooks: NamedDependency[WebhookService],
                      admin: NamedDependency[KeyState]) -> Webhook:
    """One endpoint, with its status."""
    return webhook_of(await webhooks.get(endpoint_id, admin.organization_id))


@delete("/v1/webhooks/{endpoint_id:str}", status_code=204, responses=ONE_ENDPOINT,
        guards=[admin_guard], security=SECURITY)
async def delete_webhook(endpoint_id: EndpointId, webhooks: NamedDependency[WebhookService],
                         admin: NamedDependency[KeyState]) -> None:
    """Remove the endpoint and its deliveries: it receives nothing more."""
    await webhooks.delete(endpoint_id, admin.organization_id)


@post("/v1/webhooks/{endpoint_id:str}/enable", status_code=200, responses=ONE_ENDPOINT,
      guards=[admin_guard], security=SECURITY)
async def enable_webhook(endpoint_id: EndpointId, webhooks: NamedDependency[WebhookService],
                         admin: NamedDependency[KeyState]) -> Webhook:
    """Make a failing (or disabled) endpoint active: it resumes from the event it stopped at."""
    return webhook_of(await webhooks.set_status(endpoint_id, "active", admin.organization_id))


@post("/v1/webhooks/{endpoint_id:str}/disable", status_code=200, responses=ONE_ENDPOINT,
      guards=[admin_guard], security=SECURITY)
async def disable_webhook(endpoint_id: EndpointId, webhooks: NamedDependency[WebhookService],
                          admin: NamedDependency[KeyState]) -> Webhook:
    """Stop delivering to the endpoint; its events wait for it until it is enabled again."""
    return webhook_of(await webhooks.set_status(endpoint_id, "disabled", admin.organization_id))


@get("/v1/webhooks/{endpoint_id:str}/deliveries", responses=ONE_ENDPOINT,
     guards=[admin_guard], security=SECURITY)
async def list_deliveries(endpoint_id: EndpointId, webhooks: NamedDependency[WebhookService],
                          admin: NamedDependency[KeyState], cursor: Annotated[str | None, QueryParameter()] = None,
                          limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50) -> Response[DeliveryPage]:
    """The endpoint's deliveries, newest first, ``limit`` (1-100) at a time."""
    before = int(cursor) if cursor is not None and cursor.isdigit() and len(cursor) < 19 else None
    if cursor is not None and before is None:
        raise ApiError(400, "VALIDATION_ERROR", "cursor must be the next_cursor of a previous page")
    found = await webhooks.deliveries(endpoint_id, admin.organization_id, limit=limit + 1, before=before)
    page = found[:limit]
    return Response(DeliveryPage(items=[delivery_of(d) for d in page],
                                 next_cursor=str(page[-1].position) if len(found) > limit else None))


WEBHOOK_ROUTES = [create_webhook, list_webhooks, get_webhook, delete_webhook, enable_webhook, disable_webhook,
                  list_deliveries]
