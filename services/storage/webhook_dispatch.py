"""What the webhook dispatcher reads and records: an endpoint's next notice, and each attempt's outcome, with
the endpoint's position moved in the transaction that records a delivery."""

from __future__ import annotations

from datetime import datetime

from keyledger.domain.notices import StoredNotice
from keyledger.services.storage.database import Database
from keyledger.services.storage.notices import _COLUMNS, _stored
from keyledger.services.storage.webhooks import _DELIVERY, Delivery, Endpoint, _delivery

_RECORD = (
    "INSERT INTO webhook_deliveries AS d (endpoint_id, position, message_id, type, attempts, failures, last_status, "
    "last_error, retrying_since, last_attempt_at, next_attempt_at, delivered_at) VALUES (%(endpoint)s, %(position)s, "
    "%(message_id)s, %(type)s, 1, %(failed)s, %(status)s, %(error)s, %(since)s, %(now)s, %(next)s, %(delivered)s) "
    "ON CONFLICT (endpoint_id, position) DO UPDATE SET attempts = d.attempts + 1, "
    "failures = d.failures + excluded.failures, last_status = excluded.last_status, "
    "last_error = excluded.last_error, retrying_since = coalesce(d.retrying_since, excluded.retrying_since), "
    "last_attempt_at = excluded.last_attempt_at, next_attempt_at = excluded.next_attempt_at, "
    "delivered_at = excluded.delivered_at"
)


class WebhookDispatch:
    """The dispatcher's reads and writes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def next_notice(self, endpoint: Endpoint) -> StoredNotice | None:
        """The first notice after the endpoint's position that it receives (its organization's, or every
        one for an endpoint of every organization; one of its types)."""
        org = "" if endpoint.organization_id is None else "AND organization_id = %(org)s "
        async with self._db._connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM webhook_messages WHERE position > (SELECT position FROM webhook_endpoints "
                f"WHERE id = %(id)s) {org}AND type = ANY(%(types)s) ORDER BY position LIMIT 1",
                {"id": endpoint.id, "org": endpoint.organization_id, "types": list(endpoint.event_types)})
            row = await cur.fetchone()
        return _stored(row) if row else None

    async def pending(self, endpoint_id: str, position: int) -> Delivery | None:
        """The delivery row of the notice at ``position``, if it was tried before."""
        async with self._db._connection() as conn:
            cur = await conn.execute(f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE endpoint_id = %s "
                                     "AND position = %s", (endpoint_id, position))
            row = await cur.fetchone()
        return _delivery(row) if row else None

    async def delivered(self, endpoint_id: str, notice: StoredNotice, status: int, now: datetime) -> bool:
        """Record a delivery (a 2xx) and move the endpoint past it, in one transaction; False when the
        endpoint is gone or no longer active (the dispatcher then stops)."""
        async with self._db._connection() as conn, conn.transaction():
            await conn.execute(_RECORD, {"endpoint": endpoint_id, "position": notice.position,
                                         "message_id": notice.message_id, "type": notice.type, "status": status,
                                         "failed": 0, "error": None, "since": None, "now": now, "next": None,
                                         "delivered": now})
            cur = await conn.execute("UPDATE webhook_endpoints SET position = greatest(position, %s) "
                                     "WHERE id = %s AND status = 'active'", (notice.position, endpoint_id))
            return cur.rowcount > 0

    async def failed(self, endpoint_id: str, notice: StoredNotice, status: int | None, error: str, now: datetime,
                     next_attempt_at: datetime | None) -> None:
        """Record a failed attempt: the next one is due at ``next_attempt_at``; None: retries are exhausted and
        the endpoint is marked failing (it resumes from this notice when enabled again)."""
        async with self._db._connection() as conn, conn.transaction():
            await conn.execute(_RECORD, {"endpoint": endpoint_id, "position": notice.position,
                                         "message_id": notice.message_id, "type": notice.type, "status": status,
                                         "failed": 1, "error": error[:500], "since": now, "now": now,
                                         "next": next_attempt_at, "delivered": None})
            if next_attempt_at is None:
                await conn.execute("UPDATE webhook_endpoints SET status = 'failing', status_changed_at = %s "
                                   "WHERE id = %s AND status = 'active'", (now, endpoint_id))
