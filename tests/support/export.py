"""Audit exports made without a database, through the exporter's own path (:func:`export_lines` over a
source that holds the records in memory), and a format-neutral view of them to tamper with: what the
export, signing and ``keyledger audit verify`` tests share."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncGenerator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from keyledger.services.audit.export import (
    CSV_COLUMNS,
    FIELDS,
    MANIFEST_FIELDS,
    ExportRecord,
    csv_row,
    export_lines,
    manifest_line,
)
from keyledger.services.audit.export_verify import VerifyReport
from keyledger.services.audit.signing import SigningKey
from keyledger.services.storage.audit_export_source import ExportSource

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = SigningKey.generate()  # the server's key, made at run time: no private key is kept in the tests
TRICKY = ('say "hi", \\o/ ; é ✓ 😀', "line\nbreak\r\nand\ttab", "=HYPERLINK(\"http://x\")", "-1+1", "'quoted",
          "@SUM(A1)")


def record(i: int, **fields: str | None) -> dict[str, str | None]:
    """A plausible record number ``i`` (usage, or lifecycle every fourth)."""
    at = (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    base: dict[str, str | None] = dict.fromkeys(FIELDS)
    if i % 4 == 3:
        base.update(kind="lifecycle", action="key.rotated", outcome="OK", actor="admin-1", key_id=f"key{i % 5}",
                    detail='{"at": "2026-03-01T12:00:00Z", "previous_valid_until": null}')
    else:
        base.update(kind="usage", action="verify", outcome="VALID", key_id=f"key{i % 5}", scope="read:data",
                    granted_by="website:site-1", reason="granted by website:site-1", website_id="site-1",
                    ip="203.0.113.5", user_agent=TRICKY[i % len(TRICKY)], start=f"kl_key{i % 5}Ab9z")
    base.update(at=at, id=f"{i:08x}-0000-4000-8000-000000000000", **fields)
    return base


RECORDS = [record(i) for i in range(1, 13)]


class RecordSource(ExportSource):
    """An export's source over records held in memory (dicts of :data:`FIELDS`, already in export order), in
    place of the database's. It hands out every record whatever the range asked for, so an export holds
    exactly the records given (one outside its range included)."""

    def __init__(self, records: Iterable[Mapping[str, str | None]]) -> None:  # no database behind it
        self._rows = [(None, *(fields.get(name) or None for name in FIELDS)) for fields in records]

    async def count(self, start: datetime | None, end: datetime | None) -> int:
        return len(self._rows)

    async def rows(self, start: datetime | None, end: datetime | None,
                   size: int) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        for first in range(0, len(self._rows), size):
            yield self._rows[first:first + size]


def export(fmt: str, records: list[dict[str, str | None]] = RECORDS, start: datetime | None = None,
           end: datetime | None = None, key: SigningKey = KEY) -> bytes:
    """The export of ``records`` (as :func:`export_lines` writes it, generated at T0), signed with ``key``."""
    async def collect() -> bytes:
        chunks = export_lines(RecordSource(records), fmt, start, end, key=key, generated_at=T0)
        return b"".join([chunk async for chunk in chunks])

    return asyncio.run(collect())


# -- a format-neutral view of an export, to tamper with -------------------------------------------------

def rows_of(data: bytes, fmt: str) -> list[Any]:
    """NDJSON: one decoded object per line. CSV: the header, then one list of cells per row."""
    if fmt == "ndjson":
        return [json.loads(line) for line in data.splitlines()]
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def data_of(rows: list[Any], fmt: str) -> bytes:
    """The rows written back in the exporter's canonical form (as a careful forger would): NDJSON rebuilt
    with the standard library, CSV rows rendered as the exporter renders them."""
    if fmt == "ndjson":
        return b"".join(ndjson_line(row) for row in rows)
    out = []
    for row in rows:
        if tuple(row) == CSV_COLUMNS:
            out.append((",".join(row) + "\r\n").encode())
        elif row and row[0] == "#manifest" and len(row) == 2:
            out.append(manifest_line(json.loads(row[1]), "csv"))
        elif len(row) == len(CSV_COLUMNS):
            values = dict(zip(CSV_COLUMNS, row, strict=True))
            fields = {name: None if values[name] == "" else values[name].removeprefix("'") for name in FIELDS}
            out.append(csv_row(ExportRecord(int(values["seq"]), **fields), values["prev"], values["digest"]).encode())
        else:
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\r\n").writerow(row)
            out.append(buffer.getvalue().encode())
    return b"".join(out)


def ndjson_line(row: dict[str, Any]) -> bytes:
    """One NDJSON line as the exporter writes it, rebuilt independently with the standard library."""
    if set(row) == {"manifest"}:
        manifest = row["manifest"]
        ordered = {name: manifest[name] for name in MANIFEST_FIELDS if name in manifest}
        return b'{"manifest":' + compact({**ordered, **manifest}) + b"}\n"
    fields = {name: value for name, value in row.items() if name not in ("seq", "prev", "digest")}
    return canonical(row["seq"], fields)[:-1] + b',"prev":"%s","digest":"%s"}\n' % (
        row["prev"].encode(), row["digest"].encode())


def records_start(fmt: str) -> int:
    """Index of the first record in rows_of(...)."""
    return 0 if fmt == "ndjson" else 1


def canonical(seq: int, fields: dict[str, str | None]) -> bytes:
    """The documented canonical form, rebuilt independently with the standard library."""
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b'{"seq":%d,' % seq + body[1:].encode()


def check(report: VerifyReport, *expected: str) -> str:
    """The report says not ok, and its problems mention every expected fragment; returns them joined."""
    text = "\n".join(report.problems)
    assert report.ok is False, "tampering went unnoticed"
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    return text
