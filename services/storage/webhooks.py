"""Webhook endpoints and their deliveries (``webhook_endpoints``, ``webhook_deliveries``).

Listings never select an endpoint's secret: only :meth:`WebhookEndpoints.signing` reads it, for the
dispatcher that signs with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from keyledger.services.storage.database import Database

_ENDPOINT = "id, organization_id, url, event_types, description, status, position, created_at, created_by, " \
            "status_changed_at"
_DELIVERY = "endpoint_id, position, message_id, type, attempts, failures, last_status, last_error, retrying_since, " \
            "last_attempt_at, next_attempt_at, delivered_at"
EVERY_ORGANIZATION = "*"  # a listing of every endpoint (a global admin's)


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A registered endpoint, without its secret."""

    id: str
    organization_id: str | None
    url: str
    event_types: tuple[str, ...]
    description: str
    status: str
    position: int
    created_at: datetime
    created_by: str | None = None
    status_changed_at: datetime | None = None


class SigningEndpoint(Endpoint, frozen=True, kw_only=True):
    """An endpoint with the secret its deliveries are signed with (the dispatcher's view only)."""

    secret: str


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to one notice at one endpoint."""

    endpoint_id: str
    position: int
    message_id: str
    type: str
    attempts: int
    failures: int  # failed attempts since ``retrying_since`` (the retry schedule counts these)
    last_status: int | None
    last_error: str | None
    retrying_since: datetime | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


def _endpoint(row: tuple[Any, ...]) -> Endpoint:
    names = Endpoint.__struct_fields__
    return Endpoint(**{**dict(zip(names, row, strict=True)), "event_types": tuple(row[3])})


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(**dict(zip(Delivery.__struct_fields__, row, strict=True)))


class WebhookEndpoints:
    """The endpoints of one database, and what each delivered."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, *, endpoint_id: str, organization_id: str | None, url: str, event_types: tuple[str, ...],
                     description: str, secret: str, created_at: datetime, created_by: str | None) -> Endpoint:
        """Register an endpoint; it receives the notices appended from now on (its position is the head)."""
        async with self._db._connection() as conn:
            cur = await conn.execute(
                "INSERT INTO webhook_endpoints (id, organization_id, url, event_types, description, secret, position, "
                "created_at, created_by) SELECT %s, %s, %s, %s, %s, %s, value, %s, %s FROM webhook_message_position "
                f"RETURNING {_ENDPOINT}",
                (endpoint_id, organization_id, url, list(event_types), description, secret, created_at, created_by))
            row = await cur.fetchone()
        assert row is not None
        return _endpoint(row)

    async def listed(self, organization_id: str | None) -> list[Endpoint]:
        """The endpoints of ``organization_id`` (:data:`EVERY_ORGANIZATION`: all of them), oldest first."""
        where, params = ("", ()) if organization_id == EVERY_ORGANIZATION else \
            ("WHERE organization_id IS NOT DISTINCT FROM %s", (organization_id,))
        async with self._db._connection() as conn:
            cur = await conn.execute(f"SELECT {_ENDPOINT} FROM webhook_endpoints {where} ORDER BY created_at, id",
                                     params)
            return [_endpoint(row) for row in await cur.fetchall()]

    async def get(self, endpoint_id: str) -> Endpoint | None:
        """One endpoint, or None."""
        async with self._db._connection() as conn:
            cur = await conn.execute(f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE id = %s", (endpoint_id,))
            row = await cur.fetchone()
        return _endpoint(row) if row else None

    async def delete(self, endpoint_id: str) -> bool:
        """Remove an endpoint and its deliveries; whether it existed."""
        async with self._db._connection() as conn:
            cur = await conn.execute("DELETE FROM webhook_endpoints WHERE id = %s", (endpoint_id,))
            return cur.rowcount > 0

    async def set_status(self, endpoint_id: str, status: str, now: datetime) -> Endpoint | None:
        """Set the endpoint's status; made active again, its pending delivery is tried at once and gets a full
        retry period anew. The endpoint, or None when there is none."""
        async with self._db._connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"UPDATE webhook_endpoints SET status = %s, status_changed_at = %s WHERE id = %s RETURNING {_ENDPOINT}",
                (status, now, endpoint_id))
            row = await cur.fetchone()
            if row is not None and status == "active":
                await conn.execute(
                    "UPDATE webhook_deliveries SET retrying_since = NULL, failures = 0, next_attempt_at = %s "
                    "WHERE endpoint_id = %s AND delivered_at IS NULL", (now, endpoint_id))
        return _endpoint(row) if row else None

    async def deliveries(self, endpoint_id: str, limit: int, before: int | None = None) -> list[Delivery]:
        """Up to ``limit`` deliveries of the endpoint, newest first, before position ``before`` when given."""
        async with self._db._connection() as conn:
            cur = await conn.execute(
                f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE endpoint_id = %s AND position < %s "
                "ORDER BY position DESC LIMIT %s", (endpoint_id, before if before is not None else 2**62, limit))
            return [_delivery(row) for row in await cur.fetchall()]

    async def signing(self) -> list[SigningEndpoint]:
        """Every active endpoint with its secret (the dispatcher's list)."""
        async with self._db._connection() as conn:
            cur = await conn.execute(f"SELECT {_ENDPOINT}, secret FROM webhook_endpoints WHERE status = 'active'")
            return [SigningEndpoint(**{**msgspec.structs.asdict(_endpoint(row[:-1])), "secret": row[-1]})
                    for row in await cur.fetchall()]
