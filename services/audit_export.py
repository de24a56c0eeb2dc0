"""Compliance export of the audit trail (usage + key lifecycle events), hash-chained and verifiable.

**Records.** One flat record per audit entry, both kinds interleaved in time order (ties broken by
``id``). Every field is a string or null (empty strings are exported as null, so CSV and NDJSON
carry the same values); nothing secret is exported (``secret_hash`` is dropped):

- ``kind``: ``"usage"`` (a verification or API call) or ``"lifecycle"`` (an event of a key)
- ``at``: UTC time, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (usage: ``at``; lifecycle: ``recorded_at``)
- ``id``: the usage event id or the lifecycle event id (uuid)
- ``key_id``, ``organization_id`` (lifecycle: only on ``key.created``), ``start`` (token start)
- ``action``: the usage action (``verify``, ``POST /v1/keys``...) or the event type (``key.rotated``)
- ``outcome``: the usage outcome (``VALID``, ``FORBIDDEN``...); lifecycle: ``OK``
- ``actor``: who caused a lifecycle event (metadata); usage: null
- ``scope``, ``granted_by``, ``website_id``, ``data``: the usage request and what granted it
- ``reason``: why a usage was granted or refused; why a key was revoked
- ``ip``, ``user_agent``, ``request_id``: where it came from
- ``detail``: lifecycle only: the event body as JSON text, minus the fields above and minus secrets

**Chain.** Record ``n`` (``seq`` = 1..count) carries ``prev`` (the digest of record ``n-1``; for the
first record the genesis ``SHA-256("keyledger-audit-v1")``) and ``digest`` = ``SHA-256(prev ‖ C)``
(raw 32-byte digests), where ``C`` is the record's canonical JSON: compact, ``{"seq":n,`` followed by
the fields above in sorted key order. Both formats hash the same ``C``, so their digests are equal.

**Formats.** ``ndjson``: one JSON object per line (``C`` plus ``prev`` and ``digest``), the last line
``{"manifest": {format, count, from, to, first_digest, last_digest, generated_at, digest}}``; the
manifest's own ``digest`` is ``SHA-256(last_digest ‖ its other fields as sorted compact JSON)``.
``csv`` (RFC 4180): a header row (:data:`CSV_COLUMNS`), one row per record (``reason``, ``user_agent``
and ``detail`` always quoted), null as an empty cell, a value starting with ``= + - @ ' TAB CR``
prefixed with ``'`` (no formula runs in a spreadsheet; the verifier removes it), then a row
``#manifest,<manifest JSON>``.

**Verify.** :func:`verify_export` recomputes every digest and link and checks ``seq``, time order and
the manifest, naming the line and seq of each altered, removed, inserted or reordered record. The
chain has no secret: someone who rewrites a whole export and recomputes every digest is caught only
by comparing its ``last_digest`` with one kept elsewhere (e.g. noted when the export was made).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import operator
import os
import re
from binascii import hexlify
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain, count, islice, repeat, starmap
from typing import Any

import msgspec
from psycopg import AsyncConnection, AsyncServerCursor, sql

FORMAT = "keyledger-audit-v1"
FORMATS = ("ndjson", "csv")
GENESIS = hashlib.sha256(FORMAT.encode()).digest()
FIELDS = ("action", "actor", "at", "data", "detail", "granted_by", "id", "ip", "key_id", "kind", "organization_id",
          "outcome", "reason", "request_id", "scope", "start", "user_agent", "website_id")
CSV_COLUMNS = ("seq", "at", "kind", "id", "key_id", "organization_id", "action", "outcome", "actor", "scope",
               "granted_by", "website_id", "data", "ip", "request_id", "start", "reason", "user_agent", "detail",
               "prev", "digest")
# Lifecycle event fields left out of ``detail``: flattened into the record, or secret.
NOT_IN_DETAIL = ("secret_hash", "type", "key_id", "organization_id", "reason", "start")
BATCH = 500  # records per FETCH and per chunk: small enough to stay in the CPU caches (measured)
Progress = Callable[[int], None]  # records exported so far


class ExportRecord(msgspec.Struct, gc=False):
    """One exported record: ``seq``, then the fields in sorted order (its encoding is the canonical form)."""

    seq: int
    action: str | None = None
    actor: str | None = None
    at: str | None = None
    data: str | None = None
    detail: str | None = None
    granted_by: str | None = None
    id: str | None = None
    ip: str | None = None
    key_id: str | None = None
    kind: str | None = None
    organization_id: str | None = None
    outcome: str | None = None
    reason: str | None = None
    request_id: str | None = None
    scope: str | None = None
    start: str | None = None
    user_agent: str | None = None
    website_id: str | None = None


assert ExportRecord.__struct_fields__ == ("seq", *sorted(FIELDS))

# One query, one snapshot: a Merge Append of the usage partitions' (at, id) index scans and the
# events' (recorded_at, event_id) order, so Postgres streams rows without sorting the whole range.
# Ties are broken by id alone (uuids, unique across both tables): ordering by the constant ``kind``
# column as well would make the planner sort everything instead.
_SELECT = """
SELECT NULL::int8 AS seq, r.action, r.actor,
       to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), r.data, r.detail, r.granted_by,
       r.id::text, r.ip, r.key_id, r.kind, r.organization_id, r.outcome, r.reason, r.request_id, r.scope,
       r.start, r.user_agent, r.website_id
FROM (
    SELECT u.at, u.id, NULLIF(u.action, '') AS action, NULL::text AS actor, NULLIF(u.data, '') AS data,
           NULL::text AS detail, NULLIF(u.granted_by, '') AS granted_by, NULLIF(u.ip, '') AS ip,
           NULLIF(u.key_id, '') AS key_id, 'usage'::text AS kind, NULLIF(u.organization_id, '') AS organization_id,
           NULLIF(u.outcome, '') AS outcome, NULLIF(u.reason, '') AS reason,
           NULLIF(u.request_id, '') AS request_id, NULLIF(u.scope, '') AS scope, NULLIF(u.start, '') AS start,
           NULLIF(u.user_agent, '') AS user_agent, NULLIF(u.website_id, '') AS website_id
    FROM usage_events u
    UNION ALL
    SELECT e.recorded_at, e.event_id, e.type, NULLIF(e.metadata->>'actor', ''), NULL,
           (e.data - ARRAY[%s])::text, NULL, NULLIF(e.metadata->>'ip', ''), e.stream_id, 'lifecycle',
           NULLIF(e.data->>'organization_id', ''), 'OK', NULLIF(e.data->>'reason', ''),
           NULLIF(e.metadata->>'request_id', ''), NULL, NULLIF(e.data->>'start', ''),
           NULLIF(e.metadata->>'user_agent', ''), NULL
    FROM events e
) r
""" % ", ".join(f"'{name}'" for name in NOT_IN_DETAIL)
_COUNT = ("SELECT (SELECT count(*) FROM usage_events u WHERE {usage}) "
          "+ (SELECT count(*) FROM events e WHERE {events})")
_CURSOR = "keyledger_audit_export"
_encoder = msgspec.json.Encoder()
_sorted = msgspec.json.Encoder(order="sorted")
_PREV, _DIGEST, _END = b',"prev":"', b'","digest":"', b'"}\n'
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "'")
_HEX_DIGEST = re.compile("[0-9a-f]{64}")


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC datetime (a naive one is taken to be UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _iso(moment: datetime | None) -> str | None:
    """The export's time format (as in a record's ``at``)."""
    utc = _utc(moment)
    return None if utc is None else utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start > end:
        raise ValueError(f"export range is empty: from {_iso(start)} is after to {_iso(end)}")
    return start, end


def _where(column: str, start: datetime | None, end: datetime | None) -> sql.Composable:
    """``column`` within the half-open range [start, end)."""
    conditions: list[sql.Composable] = [sql.SQL("true")]
    if start is not None:
        conditions.append(sql.SQL("{} >= {}").format(sql.SQL(column), start))
    if end is not None:
        conditions.append(sql.SQL("{} < {}").format(sql.SQL(column), end))
    return sql.SQL(" AND ").join(conditions)


async def count_records(conn: AsyncConnection, start: datetime | None = None, end: datetime | None = None) -> int:
    """How many records an export of [start, end) holds now (for a progress bar's total)."""
    start, end = _range(start, end)
    query = sql.SQL(_COUNT).format(usage=_where("u.at", start, end), events=_where("e.recorded_at", start, end))
    row = await (await conn.execute(query)).fetchone()
    return int(row[0]) if row else 0


async def _batches(conn: AsyncConnection, start: datetime | None, end: datetime | None,
                   size: int) -> AsyncGenerator[list[ExportRecord], None]:
    """The records of [start, end) in export order, ``size`` at a time, from one server-side cursor.

    The next batch is requested before the current one is handed out, so Postgres produces it meanwhile.
    Records are numbered here (``seq`` from 1): cheaper than a window function in the query.
    """
    query = sql.SQL(_SELECT + "WHERE {} ORDER BY r.at, r.id").format(_where("r.at", start, end))
    async with conn.transaction():
        cursor: AsyncServerCursor[Any]
        async with conn.cursor(name=_CURSOR, binary=True) as cursor:
            await cursor.execute(query)
            pending: asyncio.Future[list[Any]] | None = asyncio.ensure_future(cursor.fetchmany(size))
            numbered = 0
            try:
                while pending is not None:
                    rows, pending = await pending, None
                    if len(rows) == size:
                        pending = asyncio.ensure_future(cursor.fetchmany(size))
                        await asyncio.sleep(0)  # let that FETCH go out before the caller works on this batch
                    if rows:
                        records = list(starmap(ExportRecord, rows))
                        for seq, record in zip(count(numbered + 1), records):
                            record.seq = seq
                        numbered += len(records)
                        yield records
            finally:
                if pending is not None:  # abandoned early: finish the FETCH so the connection stays usable
                    with contextlib.suppress(Exception):
                        await pending


async def export_records(conn: AsyncConnection, start: datetime | None = None,
                         end: datetime | None = None) -> AsyncGenerator[dict[str, str | None], None]:
    """The plain records of [start, end) in export order (no chain), as dicts of :data:`FIELDS`."""
    start, end = _range(start, end)
    async with contextlib.aclosing(_batches(conn, start, end, BATCH)) as batches:
        async for batch in batches:
            for record in batch:
                fields = msgspec.structs.asdict(record)
                del fields["seq"]
                yield fields


class _Chain:
    """The running hash chain of one export."""

    def __init__(self) -> None:
        self.prev = GENESIS
        self.count = 0
        self.first: bytes | None = None

    def link(self, records: list[ExportRecord]) -> tuple[list[bytes], list[bytes]]:
        """Each record's canonical JSON without its final ``}``, and the hex digests [prev, d1, ..., dn]."""
        pieces = _encoder.encode_lines(records).split(b"}\n")  # no raw newline inside JSON: splits are exact
        pieces.pop()
        prev, sha = self.prev, hashlib.sha256
        digests = [hexlify(prev)]
        add = digests.append
        for piece in pieces:
            digest = sha(prev)
            digest.update(piece)
            digest.update(b"}")
            prev = digest.digest()
            add(hexlify(prev))
        if pieces and self.first is None:
            self.first = digests[1]
        self.prev, self.count = prev, self.count + len(pieces)
        return pieces, digests

    def manifest(self, start: datetime | None, end: datetime | None, generated_at: datetime) -> dict[str, Any]:
        """The closing manifest, with its own digest chained from the last record's."""
        last = hexlify(self.prev).decode() if self.count else None
        manifest: dict[str, Any] = {
            "format": FORMAT, "count": self.count, "from": _iso(start), "to": _iso(end),
            "first_digest": self.first.decode() if self.first else None, "last_digest": last,
            "generated_at": _iso(generated_at)}
        manifest["digest"] = manifest_digest(manifest)
        return manifest


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256(last_digest (genesis when none) ‖ the manifest's other fields as sorted compact JSON), hex."""
    last = manifest.get("last_digest")
    base = bytes.fromhex(last) if isinstance(last, str) and _is_digest(last) else GENESIS
    return hashlib.sha256(base + _sorted.encode({k: v for k, v in manifest.items() if k != "digest"})).hexdigest()


def _is_digest(value: object) -> bool:
    return isinstance(value, str) and _HEX_DIGEST.fullmatch(value) is not None


_csv_values = operator.attrgetter(*CSV_COLUMNS[1:-2])
_csv_short = operator.attrgetter(*CSV_COLUMNS[1:-5])  # values a row can usually carry bare
_csv_text = operator.attrgetter(*CSV_COLUMNS[-5:-2])  # reason, user_agent, detail: always quoted


def _quoted(value: str | None) -> str:
    if value is None:
        return ""
    return '"' + ("'" + value if value.startswith(_FORMULA) else value).replace('"', '""') + '"'


def _csv_row(record: ExportRecord, prev: str, digest: str) -> str:
    """One CSV row. A null is an empty cell; a value a spreadsheet would run as a formula gets a leading ``'``."""
    short = ",".join((str(record.seq), *["" if v is None else v for v in _csv_short(record)]))
    if (short.count(",") == len(CSV_COLUMNS) - 6 and '"' not in short and "\n" not in short and "\r" not in short
            and ",=" not in short and ",+" not in short and ",-" not in short and ",@" not in short
            and ",\t" not in short and ",'" not in short):  # the common case: no short cell needs quotes or a guard
        return ",".join((short, *map(_quoted, _csv_text(record)), prev, digest)) + "\r\n"
    cells = ["" if v is None else "'" + v if v.startswith(_FORMULA) else v for v in _csv_values(record)]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow((record.seq, *cells, prev, digest))
    return buffer.getvalue()


class _Writer:
    """Turns batches of records into the bytes of one format, chaining them as it goes."""

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.fmt, self.chain = fmt, _Chain()

    def header(self) -> bytes:
        """What comes before the first record."""
        return self._csv([CSV_COLUMNS]) if self.fmt == "csv" else b""

    def batch(self, records: list[ExportRecord]) -> bytes:
        """The records, chained, in this format."""
        pieces, digests = self.chain.link(records)
        if self.fmt == "ndjson":
            return b"".join(chain.from_iterable(zip(
                pieces, repeat(_PREV), digests, repeat(_DIGEST), islice(digests, 1, None), repeat(_END))))
        hexes = [digest.decode() for digest in digests]
        return "".join([_csv_row(record, hexes[i], hexes[i + 1]) for i, record in enumerate(records)]).encode()

    def manifest(self, start: datetime | None, end: datetime | None, generated_at: datetime | None) -> bytes:
        """The closing manifest line (NDJSON) or row (CSV)."""
        manifest = self.chain.manifest(start, end, generated_at or datetime.now(timezone.utc))
        if self.fmt == "ndjson":
            return _encoder.encode({"manifest": manifest}) + b"\n"
        return self._csv([("#manifest", _encoder.encode(manifest).decode())])

    @staticmethod
    def _csv(rows: Iterable[Iterable[object]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        return buffer.getvalue().encode()


def export_lines(conn: AsyncConnection, fmt: str, start: datetime | None = None, end: datetime | None = None,
                 progress: Progress | None = None, *, batch_size: int = BATCH) -> AsyncGenerator[bytes, None]:
    """The export of [start, end) in ``fmt`` (``ndjson`` or ``csv``), chained and closed by its manifest,
    as chunks of bytes ready to write; memory stays flat. ``progress(n)`` after each batch.

    Raises ValueError at once for an unknown format or a reversed range.
    """
    writer, (start, end) = _Writer(fmt), _range(start, end)

    async def chunks() -> AsyncGenerator[bytes, None]:
        if header := writer.header():
            yield header
        async with contextlib.aclosing(_batches(conn, start, end, batch_size)) as batches:  # closed with us
            async for batch in batches:
                yield writer.batch(batch)
                if progress is not None:
                    progress(writer.chain.count)
        yield writer.manifest(start, end, None)

    return chunks()


def encode_export(records: Iterable[Mapping[str, str | None]], fmt: str, start: datetime | None = None,
                  end: datetime | None = None, *, generated_at: datetime | None = None) -> Iterator[bytes]:
    """An export of plain records (dicts of :data:`FIELDS`, already in order), without a database."""
    writer, (start, end) = _Writer(fmt), _range(start, end)
    if header := writer.header():
        yield header
    batch: list[ExportRecord] = []
    for seq, fields in enumerate(records, start=1):
        batch.append(ExportRecord(seq, **{name: value or None for name, value in fields.items()}))
        if len(batch) == BATCH:
            yield writer.batch(batch)
            batch = []
    if batch:
        yield writer.batch(batch)
    yield writer.manifest(start, end, generated_at)


# ---------------------------------------------------------------------------------------------- verify

MAX_PROBLEMS = 200


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_export`: ``ok`` only when no problem was found."""

    ok: bool
    count: int  # records in the file
    problems: list[str]
    fmt: str | None = None


class _Checker:
    """Checks records one by one against the chain (flat memory), then the manifest."""

    def __init__(self) -> None:
        self.count = self.problem_count = 0
        self.expected_seq = 1
        self.last: str | None = hexlify(GENESIS).decode()  # the digest the next record must name as prev
        self.before_last: str | None = None
        self.last_where = ""
        self.first: str | None = None
        self.last_digest: str | None = None
        self.order: tuple[str, str] | None = None
        self.earliest: str | None = None
        self.latest: str | None = None
        self.manifest: dict[str, Any] | None = None
        self.manifest_where = ""
        self.problems: list[str] = []

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def malformed(self, where: str, why: str) -> None:
        """A line that should be a record but cannot be read as one."""
        self.count += 1
        self.expected_seq += 1
        self.last = self.before_last = None  # the next record's link cannot be checked
        self.problem(f"{where}: {why}")

    def record(self, where: str, seq: object, prev: object, digest: object, fields: dict[str, Any]) -> None:
        """Check one record: its own digest, its link to the record before it, its seq and its order."""
        if not isinstance(seq, int) or isinstance(seq, bool) or not _is_digest(prev) or not _is_digest(digest):
            self.malformed(where, "seq, prev or digest is missing or malformed")
            return
        assert isinstance(prev, str) and isinstance(digest, str)
        self.count += 1
        notes = []
        if self.manifest is not None:
            notes.append("comes after the manifest")
        if seq != self.expected_seq:
            notes.append(f"seq {seq} where {self.expected_seq} was expected: "
                         + (f"{seq - self.expected_seq} record(s) missing before it" if seq > self.expected_seq
                            else "record inserted, duplicated or reordered"))
        canonical = b'{"seq":%d,' % seq + _sorted.encode(fields)[1:]
        if hashlib.sha256(bytes.fromhex(prev) + canonical).hexdigest() != digest:
            extra, missing = sorted(set(fields) - set(FIELDS)), sorted(set(FIELDS) - set(fields))
            notes.append("altered: its digest does not match its content"
                         + (f" (unexpected fields: {', '.join(extra)})" if extra else "")
                         + (f" (missing fields: {', '.join(missing)})" if missing else ""))
        if self.last is not None and prev != self.last:
            notes.append("chain broken: prev is not the digest of the record before it "
                         "(a record was removed, inserted or reordered here)")
            if prev == self.before_last:
                notes.append(f"the record before it ({self.last_where}) is not chained here: inserted or moved")
        self._order(fields, notes)
        if notes:
            self.problem(f"{where} (seq {seq}): " + "; ".join(notes))
        self.first = self.first or digest
        self.before_last, self.last, self.last_digest = self.last, digest, digest
        self.last_where = f"{where}, seq {seq}"
        self.expected_seq = max(self.expected_seq, seq + 1)

    def _order(self, fields: dict[str, Any], notes: list[str]) -> None:
        at, id_ = fields.get("at"), fields.get("id")
        if not isinstance(at, str) or not isinstance(id_, str):
            return
        if self.order is not None and (at, id_) < self.order:
            notes.append("out of order: earlier than the record before it")
        self.order = (at, id_)
        self.earliest = min(self.earliest or at, at)
        self.latest = max(self.latest or at, at)

    def manifest_line(self, where: str, manifest: object) -> None:
        """Remember the manifest (checked at the end, against everything before it)."""
        if self.manifest is not None:
            self.problem(f"{where}: a second manifest (the first is at {self.manifest_where})")
        elif not isinstance(manifest, dict):
            self.problem(f"{where}: the manifest is not an object")
        else:
            self.manifest, self.manifest_where = manifest, where

    def report(self, fmt: str | None) -> VerifyReport:
        """Check the manifest against the records and return the verdict."""
        manifest, where = self.manifest, self.manifest_where
        if manifest is None:
            self.problem("no manifest: the export is truncated or its manifest was removed")
        else:
            expected: list[tuple[str, object, object, str]] = [
                ("format", manifest.get("format"), FORMAT, "not a keyledger-audit-v1 export"),
                ("count", manifest.get("count"), self.count, "records removed or added"),
                ("first_digest", manifest.get("first_digest"), self.first, "records removed or inserted at the start"),
                ("last_digest", manifest.get("last_digest"), self.last_digest, "records removed or added at the end"),
            ]
            for name, claimed, actual, meaning in expected:
                if claimed != actual:
                    self.problem(f"{where}: manifest {name} is {claimed!r} but the file gives {actual!r}: {meaning}")
            if manifest.get("digest") != manifest_digest(manifest):
                self.problem(f"{where}: manifest altered: its digest does not match its fields")
            self._range(where, manifest)
        if self.problem_count > len(self.problems):
            self.problems.append(f"... and {self.problem_count - len(self.problems)} more problems")
        return VerifyReport(ok=self.problem_count == 0, count=self.count, problems=self.problems, fmt=fmt)

    def _range(self, where: str, manifest: dict[str, Any]) -> None:
        start, end = manifest.get("from"), manifest.get("to")
        if isinstance(start, str) and self.earliest is not None and self.earliest < start:
            self.problem(f"{where}: a record at {self.earliest} is before the export's from {start}")
        if isinstance(end, str) and self.latest is not None and self.latest >= end:
            self.problem(f"{where}: a record at {self.latest} is not before the export's to {end}")


_object = msgspec.json.Decoder(dict[str, Any])


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Whole lines (with their ``\\n``) from chunks that may split or join lines anywhere."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n") if rest else chunk.split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part + b"\n"
    if rest:
        yield rest


def _verify_ndjson(lines: Iterable[bytes], checker: _Checker) -> None:
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"line {number}"
        try:
            obj = _object.decode(line)
        except msgspec.DecodeError:
            checker.malformed(where, "not a JSON object")
            continue
        if set(obj) == {"manifest"}:
            checker.manifest_line(where, obj["manifest"])
        else:
            checker.record(where, obj.pop("seq", None), obj.pop("prev", None), obj.pop("digest", None), obj)


def _uncell(cell: str) -> str | None:
    return None if cell == "" else cell[1:] if cell.startswith("'") else cell


def _verify_csv(lines: Iterable[bytes], checker: _Checker) -> None:
    reader = csv.reader(line.decode("utf-8", "replace") for line in lines)
    if tuple(next(reader, ())) != CSV_COLUMNS:
        checker.problem("line 1: not the keyledger-audit-v1 CSV header")
        return
    last_line = reader.line_num
    for row in reader:  # a quoted cell may span lines: name the line a row starts on
        where, last_line = f"line {last_line + 1}", reader.line_num
        if not row:
            continue
        if row[0] == "#manifest":
            try:
                checker.manifest_line(where, _object.decode(row[1]) if len(row) == 2 else None)
            except msgspec.DecodeError:
                checker.manifest_line(where, None)
        elif len(row) != len(CSV_COLUMNS):
            checker.malformed(where, f"{len(row)} cells where {len(CSV_COLUMNS)} were expected")
        else:
            values = dict(zip(CSV_COLUMNS, row))
            seq = values.pop("seq")
            prev, digest = values.pop("prev"), values.pop("digest")
            fields = {name: _uncell(cell) for name, cell in values.items()}
            checker.record(where, int(seq) if seq.isdigit() else None, prev, digest, fields)


def verify_export(source: Iterable[bytes] | str | os.PathLike[str]) -> VerifyReport:
    """Check an export (a file path, or its bytes in chunks or lines; NDJSON or CSV, detected).

    Reports every record that was altered, removed, inserted or reordered, naming its line and seq,
    and a truncated file or a missing, altered or mismatching manifest. Memory stays flat.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return verify_export(iter(lambda: file.read(1 << 20), b""))
    lines = _lines(source)
    first = next(lines, b"")
    checker = _Checker()
    if first.lstrip().startswith(b"{"):
        _verify_ndjson(chain([first], lines), checker)
        return checker.report("ndjson")
    if first.startswith(b"seq,"):
        _verify_csv(chain([first], lines), checker)
        return checker.report("csv")
    checker.problem("not a keyledger audit export (neither NDJSON nor its CSV header)" if first else "empty file")
    return checker.report(None)
