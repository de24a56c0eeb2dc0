"""The ``findings`` table: pages for the API and the dashboard (newest first, with a cursor), acknowledging,
the watch's reads and writes inside its transaction, and the automatic responses still due."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

import msgspec
from psycopg import AsyncConnection

from keyledger.domain.errors import ValidationError
from keyledger.domain.findings import KINDS, STATUSES, Finding, Match, Thresholds, recorded
from keyledger.domain.findings import finding_id as domain_finding_id
from keyledger.services.storage.database import Database

_COLUMNS = ("id, kind, severity, key_id, organization_id, subject, first_seen, last_seen, count, evidence, status, "
            "acknowledged_at, acknowledged_by")
_PAGE = f"""
SELECT {_COLUMNS} FROM findings
 WHERE (%(org)s::text IS NULL OR organization_id = %(org)s) AND (%(key)s::text IS NULL OR key_id = %(key)s)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s) AND (%(status)s::text IS NULL OR status = %(status)s)
   AND (%(after_at)s::timestamptz IS NULL OR (first_seen, id) < (%(after_at)s, %(after_id)s::uuid))
 ORDER BY first_seen DESC, id DESC
 LIMIT %(limit)s
"""
_UPSERT = f"""
INSERT INTO findings ({_COLUMNS}, response) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET severity = excluded.severity, organization_id = excluded.organization_id,
    first_seen = excluded.first_seen, last_seen = excluded.last_seen, count = excluded.count,
    evidence = excluded.evidence, response = coalesce(findings.response, excluded.response)
"""
_encode = msgspec.json.Encoder().encode


class FindingFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which findings to list; None means any. ``organization_id``: an organization's admin sees its own only."""

    organization_id: str | None = None
    key_id: str | None = None
    kind: str | None = None
    status: str | None = None


def encode_cursor(finding: Finding) -> str:
    """An opaque cursor pointing just after ``finding``."""
    raw = msgspec.json.encode([finding.first_seen, finding.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor points after; ValidationError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, finding = msgspec.json.decode(raw, type=tuple[datetime, str])
        return at, str(uuid.UUID(finding))
    except (ValueError, msgspec.DecodeError):
        raise ValidationError("cursor is not valid") from None


def _finding(row: Sequence[object]) -> Finding:
    values = dict(zip(_COLUMNS.split(", "), row, strict=True))
    values["id"] = str(values["id"])
    return msgspec.convert(values, Finding)


def _check(where: FindingFilter) -> None:
    if where.kind is not None and where.kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    if where.status is not None and where.status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}")


def _uuid(finding_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(finding_id)
    except ValueError:
        return None


class FindingTable:
    """Reads of the findings and the administrator's acknowledgement."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(self, where: FindingFilter, limit: int, cursor: str | None) -> tuple[list[Finding], str | None]:
        """One page of findings, newest (``first_seen``) first, and the cursor of the next page."""
        _check(where)
        after = decode_cursor(cursor) if cursor else (None, None)
        params = {"org": where.organization_id, "key": where.key_id, "kind": where.kind, "status": where.status,
                  "after_at": after[0], "after_id": after[1], "limit": limit + 1}
        async with self._db._connection() as conn:
            cur = await conn.execute(_PAGE, params)
            rows = [_finding(row) for row in await cur.fetchall()]
        page = rows[:limit]
        return page, encode_cursor(page[-1]) if len(rows) > limit else None

    async def get(self, finding_id: str) -> Finding | None:
        """One finding (None when there is none with this id, or the id is no UUID)."""
        found = _uuid(finding_id)
        if found is None:
            return None
        async with self._db._connection() as conn:
            return (await load_findings(conn, [str(found)])).get(str(found))

    async def acknowledge(self, finding_id: str, at: datetime, by: str) -> Finding | None:
        """Mark the finding acknowledged by ``by`` (kept as it is when it already was); None when it does not
        exist."""
        found = _uuid(finding_id)
        if found is None:
            return None
        async with self._db._connection() as conn:
            await conn.execute("UPDATE findings SET status = 'acknowledged', acknowledged_at = %s, "
                               "acknowledged_by = %s WHERE id = %s AND status = 'open'", (at, by, found))
            return (await load_findings(conn, [str(found)])).get(str(found))

    async def record(self, match: Match, key_id: str, organization_id: str | None) -> Finding:
        """Raise the finding ``match`` names for the key, or grow the one it already has (e.g. a leak
        report: :data:`~keyledger.domain.findings.REPORTED_KINDS`)."""
        finding_id = domain_finding_id(match.kind, key_id, match.subject)
        async with self._db._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (finding_id,))
            existing = (await load_findings(conn, [finding_id])).get(finding_id)
            finding = recorded(existing, match, key_id, organization_id, Thresholds())
            await save_findings(conn, [finding])
        return finding

    async def due(self, limit: int = 100) -> list[Finding]:
        """Findings whose automatic revocation is still to be done."""
        async with self._db._connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM findings WHERE response = 'revoke' LIMIT %s", (limit,))
            return [_finding(row) for row in await cur.fetchall()]

    async def responded(self, finding_id: str) -> None:
        """Note that the finding's automatic revocation is done."""
        async with self._db._connection() as conn:
            await conn.execute("UPDATE findings SET response = 'revoked' WHERE id = %s", (finding_id,))


async def load_findings(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, Finding]:
    """The stored findings among ``ids``, by id."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM findings WHERE id = ANY(%s::uuid[])", (list(ids),))
    return {finding.id: finding for finding in map(_finding, await cur.fetchall())}


async def save_findings(conn: AsyncConnection, findings: Iterable[Finding], respond: Collection[str] = ()) -> None:
    """Insert or update ``findings`` (an update keeps the status); those in ``respond`` get their automatic
    revocation due, unless it was due or done before."""
    params = [(f.id, f.kind, f.severity, f.key_id, f.organization_id, f.subject, f.first_seen, f.last_seen, f.count,
               _encode(f.evidence).decode(), f.status, f.acknowledged_at, f.acknowledged_by,
               "revoke" if f.id in respond else None) for f in findings]
    if params:
        async with conn.cursor() as cur:
            await cur.executemany(_UPSERT, params)
