"""Registering and managing webhook endpoints: what the API, the dashboard and the CLI call.

An endpoint belongs to an organization and receives only that organization's notices; one without
(``organization_id`` None) receives every organization's, and only a global admin (an admin key without an
organization, or the CLI) registers one. An organization's admin sees and manages only its own endpoints:
any other is "not found". The URL must pass the address policy now (and again at every delivery).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime

from keyledger.domain.errors import Forbidden, KeyNotFound, ValidationError
from keyledger.domain.webhook_urls import Network, parse_target
from keyledger.domain.webhooks import SECRET_BYTES, event_types, secret_text
from keyledger.services.clock import Clock
from keyledger.services.storage.webhooks import EVERY_ORGANIZATION, Delivery, Endpoint, WebhookEndpoints
from keyledger.services.webhooks.transport import Resolver, checked_address, system_resolver

MAX_DESCRIPTION = 500
MAX_ENDPOINTS = 100  # per organization (and for every organization)


class EndpointNotFound(KeyNotFound):
    """No such endpoint, or not one the caller may see."""


class WebhookService:
    """Endpoints, as seen by an admin of ``organization`` (None: a global admin)."""

    def __init__(self, table: WebhookEndpoints, allowed: Sequence[Network], clock: Clock,
                 resolver: Resolver = system_resolver,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._table, self._allowed, self._clock = table, tuple(allowed), clock
        self._resolver, self._random = resolver, random_bytes

    async def register(self, url: str, events: list[str] | None, description: str, *, admin_organization: str | None,
                       organization_id: str | None = None, created_by: str | None = None) -> tuple[Endpoint, str]:
        """A new endpoint and its secret (shown only to this caller, only now)."""
        if admin_organization is not None:
            if organization_id not in (None, admin_organization):
                raise Forbidden("an organization's admin key can only register endpoints of that organization")
            organization_id = admin_organization
        if len(description) > MAX_DESCRIPTION:
            raise ValidationError(f"description must be at most {MAX_DESCRIPTION} characters")
        types = event_types(events)
        target = parse_target(url)
        await checked_address(target, self._allowed, self._resolver)
        if len(await self._table.listed(organization_id)) >= MAX_ENDPOINTS:
            raise ValidationError(f"at most {MAX_ENDPOINTS} endpoints per organization; delete one first")
        secret = secret_text(self._random(SECRET_BYTES))
        endpoint = await self._table.create(
            endpoint_id="wh_" + self._random(12).hex(), organization_id=organization_id, url=url, event_types=types,
            description=description, secret=secret, created_at=self._clock(), created_by=created_by)
        return endpoint, secret

    async def listed(self, admin_organization: str | None) -> list[Endpoint]:
        """The endpoints the admin sees: its organization's, or every one for a global admin."""
        return await self._table.listed(EVERY_ORGANIZATION if admin_organization is None else admin_organization)

    async def get(self, endpoint_id: str, admin_organization: str | None) -> Endpoint:
        """One endpoint the admin may see; EndpointNotFound otherwise."""
        endpoint = await self._table.get(endpoint_id) if len(endpoint_id) <= 100 else None
        if endpoint is None or (admin_organization is not None and endpoint.organization_id != admin_organization):
            raise EndpointNotFound(f"webhook endpoint {endpoint_id} not found")
        return endpoint

    async def delete(self, endpoint_id: str, admin_organization: str | None) -> None:
        """Remove an endpoint (its deliveries go with it); it receives nothing more."""
        await self.get(endpoint_id, admin_organization)
        await self._table.delete(endpoint_id)

    async def set_status(self, endpoint_id: str, status: str, admin_organization: str | None) -> Endpoint:
        """``active`` (enable: resume from the notice it stopped at, with a full retry period) or ``disabled``."""
        await self.get(endpoint_id, admin_organization)
        endpoint = await self._table.set_status(endpoint_id, status, self._clock())
        if endpoint is None:
            raise EndpointNotFound(f"webhook endpoint {endpoint_id} not found")
        return endpoint

    async def deliveries(self, endpoint_id: str, admin_organization: str | None, limit: int = 50,
                         before: int | None = None) -> list[Delivery]:
        """The endpoint's latest deliveries, newest first."""
        await self.get(endpoint_id, admin_organization)
        return await self._table.deliveries(endpoint_id, limit, before)

    def now(self) -> datetime:
        """The process clock's time."""
        return self._clock()
