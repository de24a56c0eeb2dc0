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
``{"manifest": {format, count, from, to, first_digest, last_digest, generated_at, key_id, digest, signature}}``
(keys in that order, compact); the manifest's own ``digest`` is ``SHA-256(last_digest ‖ its other fields but
signature, as sorted compact JSON)``. ``csv`` (RFC 4180): a header row (:data:`CSV_COLUMNS`), one row per
record (``reason``, ``user_agent`` and ``detail`` always quoted), null as an empty cell, a value starting
with ``= + - @ ' TAB CR`` prefixed with ``'`` (no formula runs in a spreadsheet; the verifier removes it),
then a row ``#manifest,<manifest JSON>``.

**Signature.** ``key_id`` names the server's Ed25519 key and ``signature`` is its signature (base64) of the
manifest's sorted compact JSON without ``signature`` (see :mod:`services.audit.signing`). The manifest
binds the whole chain (``count``, ``first_digest``, ``last_digest``), so only the holder of the private key
can issue a manifest for a rewritten export. Just before the manifest is written, the export's chain head
is recorded in ``audit_export_anchors``.

**Verify.** :func:`~services.audit.export_verify.verify_export` recomputes every digest and link, checks
``seq``, time order, that every line is exactly what this module writes (no duplicate, unknown or missing
field, no other spacing, key order or escaping) and the manifest, naming the line and seq of each altered,
removed, inserted or reordered record; with the public key it checks the signature too.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import operator
import re
from binascii import hexlify
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from itertools import chain, count, islice, repeat, starmap
from typing import Any

import msgspec

from keyledger.services.audit.signing import SigningKey
from keyledger.services.clock import as_utc
from keyledger.services.storage.audit_export_anchors import ExportAnchor
from keyledger.services.storage.audit_export_source import ExportSource

FORMAT = "keyledger-audit-v1"
FORMATS = ("ndjson", "csv")
GENESIS = hashlib.sha256(FORMAT.encode()).digest()
FIELDS = ("action", "actor", "at", "data", "detail", "granted_by", "id", "ip", "key_id", "kind", "organization_id",
          "outcome", "reason", "request_id", "scope", "start", "user_agent", "website_id")
CSV_COLUMNS = ("seq", "at", "kind", "id", "key_id", "organization_id", "action", "outcome", "actor", "scope",
               "granted_by", "website_id", "data", "ip", "request_id", "start", "reason", "user_agent", "detail",
               "prev", "digest")
MANIFEST_FIELDS = ("format", "count", "from", "to", "first_digest", "last_digest", "generated_at", "key_id", "digest",
                   "signature")  # in the order they are written
BATCH = 500  # records per FETCH and per chunk: small enough to stay in the CPU caches (measured)
Progress = Callable[[int], None]  # records exported so far
Anchor = Callable[[ExportAnchor], Awaitable[None]]  # records an export's chain head before its manifest


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

_encoder = msgspec.json.Encoder()
sorted_json = msgspec.json.Encoder(order="sorted")
_PREV, _DIGEST, _END = b',"prev":"', b'","digest":"', b'"}\n'
_FORMULA = ("=", "+", "-", "@", "\t", "\r", "'")
_HEX_DIGEST = re.compile("[0-9a-f]{64}")


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC datetime (a naive one is taken to be UTC); ValueError when out of range."""
    return None if moment is None else as_utc(moment)


def _iso(moment: datetime | None) -> str | None:
    """The export's time format (as in a record's ``at``)."""
    utc = _utc(moment)
    # the year zero-padded by hand: strftime's %Y gives "193" for the year 193 on glibc
    return None if utc is None else f"{utc.year:04d}-{utc.strftime('%m-%dT%H:%M:%S.%f')}Z"


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start > end:
        raise ValueError(f"export range is empty: from {_iso(start)} is after to {_iso(end)}")
    return start, end


async def count_records(source: ExportSource, start: datetime | None = None, end: datetime | None = None) -> int:
    """How many records an export of [start, end) holds now (for a progress bar's total)."""
    start, end = _range(start, end)
    return await source.count(start, end)


async def _batches(source: ExportSource, start: datetime | None, end: datetime | None,
                   size: int) -> AsyncGenerator[list[ExportRecord], None]:
    """The records of [start, end) in export order, ``size`` at a time, numbered from 1 (``seq``):
    cheaper here than a window function in the query."""
    numbered = 0
    async with contextlib.aclosing(source.rows(start, end, size)) as pages:
        async for rows in pages:
            records = list(starmap(ExportRecord, rows))
            for seq, record in zip(count(numbered + 1), records):
                record.seq = seq
            numbered += len(records)
            yield records


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

    def manifest(self, start: datetime | None, end: datetime | None, generated_at: datetime,
                 key: SigningKey) -> dict[str, Any]:
        """The closing manifest, with its own digest chained from the last record's, signed by ``key``."""
        last = hexlify(self.prev).decode() if self.count else None
        manifest: dict[str, Any] = {
            "format": FORMAT, "count": self.count, "from": _iso(start), "to": _iso(end),
            "first_digest": self.first.decode() if self.first else None, "last_digest": last,
            "generated_at": _iso(generated_at), "key_id": key.key_id}
        manifest["digest"] = manifest_digest(manifest)
        manifest["signature"] = key.sign(manifest)
        return manifest


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256(last_digest (genesis when none) ‖ the manifest's fields but digest and signature as sorted
    compact JSON), hex."""
    last = manifest.get("last_digest")
    base = bytes.fromhex(last) if isinstance(last, str) and is_digest(last) else GENESIS
    fields = {k: v for k, v in manifest.items() if k not in ("digest", "signature")}
    return hashlib.sha256(base + sorted_json.encode(fields)).hexdigest()


def manifest_json(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as the exporter writes it: compact JSON, its fields in :data:`MANIFEST_FIELDS` order
    (then any others, sorted: the verifier refuses those)."""
    known = [name for name in MANIFEST_FIELDS if name in manifest]
    return _encoder.encode({name: manifest[name] for name in known + sorted(set(manifest) - set(known))})


def manifest_line(manifest: Mapping[str, Any], fmt: str) -> bytes:
    """The manifest's line (NDJSON, with its newline) or row (CSV, with its CRLF), as the exporter writes it."""
    if fmt == "ndjson":
        return b'{"manifest":' + manifest_json(manifest) + b"}\n"
    return _Writer._csv([("#manifest", manifest_json(manifest).decode())])


def anchor_of(manifest: Mapping[str, Any], start: datetime | None, end: datetime | None,
              generated_at: datetime) -> ExportAnchor:
    """What ``audit_export_anchors`` keeps of a signed manifest."""
    return ExportAnchor(generated_at=generated_at, range_from=start, range_to=end, record_count=manifest["count"],
                        first_digest=manifest["first_digest"], last_digest=manifest["last_digest"],
                        manifest_digest=manifest["digest"], key_id=manifest["key_id"],
                        signature=manifest["signature"])


def manifest_from_anchor(anchor: ExportAnchor) -> dict[str, Any]:
    """The signed manifest an export handed out, rebuilt from what ``audit_export_anchors`` kept of it."""
    return {"format": FORMAT, "count": anchor.record_count, "from": _iso(anchor.range_from),
            "to": _iso(anchor.range_to), "first_digest": anchor.first_digest, "last_digest": anchor.last_digest,
            "generated_at": _iso(anchor.generated_at), "key_id": anchor.key_id, "digest": anchor.manifest_digest,
            "signature": anchor.signature}


def is_digest(value: object) -> bool:
    """Whether ``value`` is a lowercase hex SHA-256 digest."""
    return isinstance(value, str) and _HEX_DIGEST.fullmatch(value) is not None


_csv_values = operator.attrgetter(*CSV_COLUMNS[1:-2])
_csv_short = operator.attrgetter(*CSV_COLUMNS[1:-5])  # values a row can usually carry bare
_csv_text = operator.attrgetter(*CSV_COLUMNS[-5:-2])  # reason, user_agent, detail: always quoted


def _quoted(value: str | None) -> str:
    if value is None:
        return ""
    return '"' + ("'" + value if value.startswith(_FORMULA) else value).replace('"', '""') + '"'


def csv_row(record: ExportRecord, prev: str, digest: str) -> str:
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

    def __init__(self, fmt: str, key: SigningKey) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.fmt, self.key, self.chain = fmt, key, _Chain()

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
        return "".join([csv_row(record, hexes[i], hexes[i + 1]) for i, record in enumerate(records)]).encode()

    def manifest(self, start: datetime | None, end: datetime | None, generated_at: datetime) -> dict[str, Any]:
        """The closing manifest, signed with the writer's key."""
        return self.chain.manifest(start, end, generated_at, self.key)

    def manifest_line(self, manifest: Mapping[str, Any]) -> bytes:
        """The closing manifest line (NDJSON) or row (CSV)."""
        return manifest_line(manifest, self.fmt)

    @staticmethod
    def _csv(rows: Iterable[Iterable[object]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        return buffer.getvalue().encode()


def export_lines(source: ExportSource, fmt: str, start: datetime | None = None, end: datetime | None = None,
                 progress: Progress | None = None, *, key: SigningKey, anchor: Anchor | None = None,
                 batch_size: int = BATCH, generated_at: datetime | None = None) -> AsyncGenerator[bytes, None]:
    """The export of [start, end) in ``fmt`` (``ndjson`` or ``csv``), chained and closed by its manifest
    signed with ``key``, as chunks of bytes ready to write; memory stays flat. ``progress(n)`` after each
    batch. ``anchor`` records the export's chain head before the manifest is written: if it fails, the
    export ends without a manifest (and so does not verify).

    Raises ValueError at once for an unknown format or a reversed range.
    """
    writer, (start, end) = _Writer(fmt, key), _range(start, end)

    async def chunks() -> AsyncGenerator[bytes, None]:
        if header := writer.header():
            yield header
        async with contextlib.aclosing(_batches(source, start, end, batch_size)) as batches:  # closed with us
            async for batch in batches:
                yield writer.batch(batch)
                if progress is not None:
                    progress(writer.chain.count)
        at = generated_at or datetime.now(UTC)
        manifest = writer.manifest(start, end, at)
        if anchor is not None:
            await anchor(anchor_of(manifest, start, end, at))
        yield writer.manifest_line(manifest)

    return chunks()
