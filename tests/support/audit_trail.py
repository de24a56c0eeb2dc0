"""An audit trail written straight into a real Postgres: three lifecycle events of one key and usage rows over
three days (three partitions) around and between them, for the export and signing tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.events import KeyRevoked, KeyRotated
from keyledger.domain.recorded import Metadata
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.usage_partitions import ensure_partition, utc_day
from tests.support.factories import created

SECRET = "$argon2id$v=19$m=65536,t=3,p=1$SECRET-PLACEHOLDER"
TRICKY_AGENT = 'Mozilla "quoted", back\\slash\nnew line\ttab ✓ 😀'
USAGE_COLUMNS = ("id", "at", "action", "outcome", "key_id", "start", "organization_id", "scope", "granted_by",
                 "reason", "website_id", "data", "ip", "user_agent", "request_id")


@dataclass(frozen=True)
class Trail:
    """What was written: every (at, id) in export order, the lifecycle event ids and times."""

    order: list[tuple[datetime, str]]
    lifecycle: set[str]
    created: datetime
    revoked: datetime


async def lifecycle_events(store: PostgresEventStore) -> list[tuple[datetime, str]]:
    """Key key-a created, rotated and revoked; each event's (recorded_at, event id)."""
    meta = Metadata(actor="admin:root", ip="198.51.100.7", user_agent="keyledger-cli/1", request_id="req-1")
    first = msgspec.structs.replace(created("key-a", name="ingest"), secret_hash=SECRET, organization_id="org-1")
    written = await store.append("key-a", 0, [first], meta)
    written += await store.append("key-a", 1, [KeyRotated(key_id="key-a", at=first.at, secret_hash=SECRET + "2",
                                                           start="kl_key-aXy9Q")], meta)
    written += await store.append("key-a", 2, [KeyRevoked(key_id="key-a", at=first.at, reason="leaked")], meta)
    return [(event.recorded_at, str(event.event_id)) for event in written]


def usage_row(at: datetime, **fields: str | None) -> dict[str, Any]:
    """A usage row at ``at``: a valid verify of key-a, with ``fields`` changed."""
    row: dict[str, Any] = dict.fromkeys(USAGE_COLUMNS)
    row.update(id=str(uuid.uuid4()), at=at, action="verify", outcome="VALID", key_id="key-a",
               start="kl_key-aAb9z", organization_id="org-1", scope="read:data", granted_by="website:site-a",
               reason="granted by website:site-a", website_id="site-a", data="analytics_data", ip="203.0.113.5",
               user_agent="svc/1", request_id="r-1")
    row.update(fields)
    return row


async def write_usage(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """COPY ``rows`` into ``usage_events``, their partitions made first."""
    for day in sorted({utc_day(row["at"]) for row in rows}):
        await ensure_partition(conn, day)
    async with conn.cursor().copy(f"COPY usage_events ({', '.join(USAGE_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row([row[column] for column in USAGE_COLUMNS])


async def write_trail(store: PostgresEventStore, pool: AsyncConnectionPool) -> Trail:
    """Three lifecycle events now, usage over three days (three partitions) around and between them."""
    lifecycle = await lifecycle_events(store)
    (created_at, _), (rotated_at, _), (revoked_at, _) = lifecycle
    usage = [
        usage_row(created_at - timedelta(days=1), outcome="NOT_FOUND", reason=""),
        usage_row(created_at + (rotated_at - created_at) / 2, user_agent=TRICKY_AGENT, ip="=1+2"),
        usage_row(rotated_at, outcome="FORBIDDEN"),  # a tie with a lifecycle event: ordered by id
        usage_row(revoked_at + timedelta(days=1), outcome="REVOKED"),
        usage_row(revoked_at + timedelta(days=1, seconds=1), outcome="REVOKED", action="POST /v1/keys"),
    ]
    async with pool.connection() as conn:
        await write_usage(conn, usage)
    order = sorted(lifecycle + [(row["at"], row["id"]) for row in usage])
    return Trail(order, {id_ for _, id_ in lifecycle}, created_at, revoked_at)
