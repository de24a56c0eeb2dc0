"""The chain head of every compliance export (table ``audit_export_anchors``, append-only).

The exporter records one row just before it writes the manifest, with what the manifest says, so
what an export handed out stays on record: a later export can be checked against it.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.services.storage.database import Database

_FIELDS = ("generated_at", "range_from", "range_to", "record_count", "first_digest", "last_digest",
           "manifest_digest", "key_id", "signature")
_INSERT = f"INSERT INTO audit_export_anchors ({', '.join(_FIELDS)}) VALUES ({', '.join(['%s'] * len(_FIELDS))})"
_RECENT = f"SELECT {', '.join(_FIELDS)} FROM audit_export_anchors ORDER BY id DESC LIMIT %s"


class ExportAnchor(msgspec.Struct, frozen=True, kw_only=True):
    """One export as its manifest describes it: when, which range, how many records, which chain head."""

    generated_at: datetime
    range_from: datetime | None
    range_to: datetime | None
    record_count: int
    first_digest: str | None
    last_digest: str | None
    manifest_digest: str
    key_id: str
    signature: str


class ExportAnchors:
    """``audit_export_anchors``: record an export, read the latest ones."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, anchor: ExportAnchor) -> None:
        """Keep ``anchor`` (rows are never changed or removed)."""
        async with self._db._connection() as conn:
            await conn.execute(_INSERT, tuple(getattr(anchor, name) for name in _FIELDS))

    async def recent(self, limit: int = 100) -> list[ExportAnchor]:
        """The latest ``limit`` exports, newest first."""
        async with self._db._connection() as conn:
            rows = await (await conn.execute(_RECENT, (limit,))).fetchall()
        return [ExportAnchor(**dict(zip(_FIELDS, row, strict=True))) for row in rows]
