"""Verification of a compliance export (see :mod:`services.audit.export` for the format).

Reads an NDJSON or CSV export once, with flat memory, and refuses it (``ok`` False, every problem
named with its line and seq) unless all of these hold:

1. **Form.** Every line is byte for byte what the exporter writes for the values it carries: compact
   JSON, the record's fields in their order, the exporter's escaping, null (never ``""``) for nothing;
   no duplicate field (a reader that keeps the first of two would see other data than one that keeps
   the last), no unknown or missing field, no blank line, no other spacing. In CSV: the exact header,
   each row as the exporter renders it (its quoting and formula guard), the ``#manifest`` row likewise.
2. **Chain.** Each record's ``digest`` is SHA-256(prev ‖ its canonical JSON), its ``prev`` is the digest
   of the record before it (the genesis for the first), ``seq`` counts 1, 2, ..., times never go back.
3. **Manifest.** Exactly one, last, with its known fields only; its ``count``, ``first_digest`` and
   ``last_digest`` are the file's, its records lie in its ``[from, to)``, its ``digest`` matches.
4. **Signature** (only with a public key: :func:`check_signature`). The manifest names that key
   (``key_id``) and carries its valid Ed25519 signature. Without a key, ``signature`` is
   ``"not_checked"``: the file is then only shown to be self-consistent, which anyone can make it.
5. **Since** (only with an earlier manifest, ``since=``: :func:`check_since`). Both exports start at the
   same ``from``, this one ends no earlier and was made no earlier, holds at least the earlier one's
   ``count`` records, and its record ``seq = count`` carries the earlier ``last_digest``: its first
   ``count`` records are exactly the ones the earlier export handed out.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
from binascii import hexlify
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

import msgspec

from keyledger.services.audit.export import (
    CSV_COLUMNS,
    FIELDS,
    FORMAT,
    GENESIS,
    MANIFEST_FIELDS,
    ExportRecord,
    csv_row,
    is_digest,
    manifest_digest,
    manifest_line,
    sorted_json,
)
from keyledger.services.audit.signing import PublicKey

MAX_PROBLEMS = 200
Signature = Literal["verified", "not_checked", "missing", "invalid"]
_REQUIRED = tuple(name for name in MANIFEST_FIELDS if name not in ("key_id", "signature"))
_CSV_HEADER = (",".join(CSV_COLUMNS) + "\r\n").encode()
_FIELD_SET = frozenset(FIELDS)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify_export`: ``ok`` only when no problem was found in what was checked.

    ``signature`` says whether the manifest's signature was checked and how it went: ``verified``,
    ``invalid``, ``missing`` (a key was given but the manifest is not signed) or ``not_checked`` (no key
    was given: then ``ok`` proves only that the file is self-consistent). :attr:`verified` is both.
    """

    ok: bool
    count: int  # records in the file
    problems: list[str]
    fmt: str | None = None
    signature: Signature = "not_checked"
    key_id: str | None = None  # the key the manifest names
    manifest: dict[str, Any] | None = None  # the manifest as read (None when there is none)
    since_digest: str | None = None  # with since=: the digest of the record seq = the earlier count

    @property
    def verified(self) -> bool:
        """No problem, and the signature checked with the server's public key."""
        return self.ok and self.signature == "verified"


def _duplicates(text: bytes) -> list[str]:
    """The field names that occur twice in one object of a JSON line (at any depth)."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in items]
        found.extend(sorted({name for name in names if names.count(name) > 1}))
        return dict(items)

    try:
        json.loads(text, object_pairs_hook=pairs)
    except ValueError:
        return []
    return found


def _not_canonical(text: bytes) -> str:
    """Why a line that decodes is still refused: it is not exactly what the exporter writes."""
    if duplicates := _duplicates(text):
        return (f"duplicate field(s) {', '.join(duplicates)}: readers may see different values "
                "(the exporter writes each field once)")
    return "not in the exporter's canonical form (compact JSON, fields in order, the exporter's escaping)"


def _field_notes(fields: Mapping[str, Any]) -> list[str]:
    """What is wrong with a record's fields, apart from their digest."""
    if fields.keys() == _FIELD_SET and all(value is None or (type(value) is str and value)
                                           for value in fields.values()):
        return []  # the usual case, in one pass
    notes = []
    if unknown := sorted(set(fields) - set(FIELDS)):
        notes.append(f"unknown field(s): {', '.join(unknown)}")
    if missing := sorted(set(FIELDS) - set(fields)):
        notes.append(f"missing field(s): {', '.join(missing)}")
    if typed := sorted(name for name, value in fields.items() if value is not None and not isinstance(value, str)):
        notes.append(f"not a string or null: {', '.join(typed)}")
    if empty := sorted(name for name, value in fields.items() if value == ""):
        notes.append(f"empty string where the exporter writes null: {', '.join(empty)}")
    return notes


class _Checker:
    """Checks records one by one against the chain (flat memory), then the manifest."""

    def __init__(self, since_count: int | None) -> None:
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
        self.since_count = since_count
        self.since_digest: str | None = None

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

    def record(self, where: str, seq: object, prev: object, digest: object, fields: dict[str, Any],
               notes: list[str], line: bytes | None = None) -> None:
        """Check one record: its form, its own digest, its link to the record before it, its seq and its
        order. ``line`` (NDJSON): the line as read, which must be exactly the exporter's encoding."""
        if not isinstance(seq, int) or isinstance(seq, bool) or not is_digest(prev) or not is_digest(digest):
            self.malformed(where, "seq, prev or digest is missing or malformed")
            return
        assert isinstance(prev, str) and isinstance(digest, str)
        self.count += 1
        notes = [*notes, *_field_notes(fields)]
        if self.manifest is not None:
            notes.append("comes after the manifest")
        if seq != self.expected_seq:
            notes.append(f"seq {seq} where {self.expected_seq} was expected: "
                         + (f"{seq - self.expected_seq} record(s) missing before it" if seq > self.expected_seq
                            else "record inserted, duplicated or reordered"))
        canonical = b'{"seq":%d,' % seq + sorted_json.encode(fields)[1:]
        if line is not None and line != b'%s,"prev":"%s","digest":"%s"}' % (canonical[:-1], prev.encode(),
                                                                           digest.encode()):
            notes.append(_not_canonical(line))
        if hashlib.sha256(bytes.fromhex(prev) + canonical).hexdigest() != digest:
            notes.append("altered: its digest does not match its content")
        if self.last is not None and prev != self.last:
            notes.append("chain broken: prev is not the digest of the record before it "
                         "(a record was removed, inserted or reordered here)")
            if prev == self.before_last:
                notes.append(f"the record before it ({self.last_where}) is not chained here: inserted or moved")
        self._order(fields, notes)
        if notes:
            self.problem(f"{where} (seq {seq}): " + "; ".join(notes))
        if seq == self.since_count and self.since_digest is None:
            self.since_digest = digest
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

    def manifest_line(self, where: str, manifest: object, notes: list[str]) -> None:
        """Remember the manifest (checked at the end, against everything before it)."""
        if self.manifest is not None:
            self.problem(f"{where}: a second manifest (the first is at {self.manifest_where})")
        elif not isinstance(manifest, dict):
            self.problem(f"{where}: the manifest is not an object")
        else:
            self.manifest, self.manifest_where = manifest, where
            for note in notes:
                self.problem(f"{where}: manifest {note}")

    def report(self, fmt: str | None) -> VerifyReport:
        """Check the manifest against the records and return the verdict."""
        manifest, where = self.manifest, self.manifest_where
        if manifest is None:
            self.problem("no manifest: the export is truncated or its manifest was removed")
        else:
            for note in _manifest_notes(manifest):
                self.problem(f"{where}: manifest {note}")
            expected: list[tuple[str, object, object, str]] = [
                ("format", manifest.get("format"), FORMAT, "not a keyledger-audit-v1 export"),
                ("count", manifest.get("count"), self.count, "records removed or added"),
                ("first_digest", manifest.get("first_digest"), self.first, "records removed or inserted at the start"),
                ("last_digest", manifest.get("last_digest"), self.last_digest, "records removed or added at the end"),
            ]
            for name, claimed, actual, meaning in expected:
                if claimed != actual:
                    self.problem(f"{where}: manifest {name} is {claimed!r} but the file gives {actual!r}: {meaning}")
            self._range(where, manifest)
        if self.problem_count > len(self.problems):
            self.problems.append(f"... and {self.problem_count - len(self.problems)} more problems")
        key_id = manifest.get("key_id") if manifest is not None else None
        return VerifyReport(ok=self.problem_count == 0, count=self.count, problems=self.problems, fmt=fmt,
                            key_id=key_id if isinstance(key_id, str) else None, manifest=manifest,
                            since_digest=self.since_digest)

    def _range(self, where: str, manifest: dict[str, Any]) -> None:
        start, end = manifest.get("from"), manifest.get("to")
        if isinstance(start, str) and self.earliest is not None and self.earliest < start:
            self.problem(f"{where}: a record at {self.earliest} is before the export's from {start}")
        if isinstance(end, str) and self.latest is not None and self.latest >= end:
            self.problem(f"{where}: a record at {self.latest} is not before the export's to {end}")


def _manifest_notes(manifest: Mapping[str, Any]) -> list[str]:
    """What is wrong with a manifest on its own: its fields, their types, its digest."""
    notes = []
    if unknown := sorted(set(manifest) - set(MANIFEST_FIELDS)):
        notes.append(f"has unknown field(s): {', '.join(unknown)}")
    if missing := [name for name in _REQUIRED if name not in manifest]:
        notes.append(f"lacks field(s): {', '.join(missing)}")
    count = manifest.get("count")
    if "count" in manifest and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        notes.append("count is not a whole number")
    for name in ("format", "generated_at", "digest", "key_id", "signature"):
        if name in manifest and not isinstance(manifest[name], str):
            notes.append(f"{name} is not a string")
    for name in ("from", "to"):
        if manifest.get(name) is not None and not isinstance(manifest[name], str):
            notes.append(f"{name} is not a time or null")
    for name in ("first_digest", "last_digest"):
        if manifest.get(name) is not None and not is_digest(manifest[name]):
            notes.append(f"{name} is not a digest or null")
    if ("key_id" in manifest) != ("signature" in manifest):
        notes.append("has a key_id without a signature or a signature without a key_id")
    if manifest.get("digest") != manifest_digest(manifest):
        notes.append("altered: its digest does not match its fields")
    return notes


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


def _manifest_form(manifest: object, raw: bytes, fmt: str) -> list[str]:
    """Whether a manifest line (NDJSON, without its newline) or row (CSV, with its CRLF) is exactly what
    the exporter writes for that manifest."""
    if not isinstance(manifest, dict):
        return []
    expected = manifest_line(manifest, fmt)
    if raw == (expected[:-1] if fmt == "ndjson" else expected):
        return []
    return [_not_canonical(raw if fmt == "ndjson" else _csv_manifest_json(raw))]


def _csv_manifest_json(raw: bytes) -> bytes:
    """The JSON cell of a CSV ``#manifest`` row (empty when there is none)."""
    row = next(csv.reader([raw.decode("utf-8", "replace")]), [])
    return row[1].encode() if len(row) == 2 else b""


def _verify_ndjson(lines: Iterable[bytes], checker: _Checker) -> None:
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        where = f"line {number}"
        if not line.strip():
            checker.problem(f"{where}: a blank line (the exporter writes none)")
            continue
        try:
            obj = _object.decode(line)
        except msgspec.DecodeError:
            checker.malformed(where, "not a JSON object")
            continue
        if set(obj) == {"manifest"}:
            checker.manifest_line(where, obj["manifest"], _manifest_form(obj["manifest"], line, "ndjson"))
        else:
            seq, prev, digest = obj.pop("seq", None), obj.pop("prev", None), obj.pop("digest", None)
            checker.record(where, seq, prev, digest, obj, [], line)


def _uncell(cell: str) -> str | None:
    return None if cell == "" else cell[1:] if cell.startswith("'") else cell


def _verify_csv(lines: Iterable[bytes], checker: _Checker) -> None:
    taken: list[bytes] = []  # the raw lines of the row being read (a quoted cell may span lines)

    def text() -> Iterator[str]:
        for line in lines:
            taken.append(line)
            yield line.decode("utf-8", "replace")

    def raw_row() -> bytes:
        raw = b"".join(taken)
        taken.clear()
        return raw if raw.endswith(b"\n") else raw + b"\r\n"  # the file's last line may lack its line end

    reader = csv.reader(text())
    if tuple(next(reader, ())) != CSV_COLUMNS:
        checker.problem("line 1: not the keyledger-audit-v1 CSV header")
        return
    if raw_row() != _CSV_HEADER:
        checker.problem("line 1: the header is not in the exporter's form (comma separated, CRLF)")
    last_line = reader.line_num
    for row in reader:  # name the line a row starts on
        where, last_line, raw = f"line {last_line + 1}", reader.line_num, raw_row()
        if not row:
            checker.problem(f"{where}: a blank line (the exporter writes none)")
            continue
        if row[0] == "#manifest":
            try:
                manifest = _object.decode(row[1]) if len(row) == 2 else None
            except msgspec.DecodeError:
                manifest = None
            checker.manifest_line(where, manifest, _manifest_form(manifest, raw, "csv"))
        elif len(row) != len(CSV_COLUMNS):
            checker.malformed(where, f"{len(row)} cells where {len(CSV_COLUMNS)} were expected")
        else:
            values = dict(zip(CSV_COLUMNS, row, strict=True))
            seq_cell = values.pop("seq")
            prev, digest = values.pop("prev"), values.pop("digest")
            fields = {name: _uncell(cell) for name, cell in values.items()}
            seq = int(seq_cell) if seq_cell.isascii() and seq_cell.isdigit() else None
            notes = []
            if seq is not None and is_digest(prev) and is_digest(digest) and \
                    csv_row(ExportRecord(seq, **fields), prev, digest).encode() != raw:
                notes.append("not in the exporter's canonical form (its quoting, formula guard, null as an empty "
                             "cell, CRLF)")
            checker.record(where, seq, prev, digest, fields, notes)


def verify_export(source: Iterable[bytes] | str | os.PathLike[str], public_key: PublicKey | None = None, *,
                  since: Mapping[str, Any] | None = None) -> VerifyReport:
    """Check an export (a file path, or its bytes in chunks or lines; NDJSON or CSV, detected).

    Reports every record that was altered, removed, inserted or reordered, naming its line and seq, every
    line not exactly in the exporter's form, and a truncated file or a missing, altered or mismatching
    manifest. With ``public_key``, checks the manifest's signature (:func:`check_signature`); with
    ``since`` (an earlier export's manifest, see :func:`read_manifest`), that this export extends that
    one (:func:`check_since`). Memory stays flat.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return verify_export(iter(lambda: file.read(1 << 20), b""), public_key, since=since)
    count = since.get("count") if since is not None else None
    checker = _Checker(count if isinstance(count, int) and count > 0 else None)
    lines = _lines(source)
    first = next(lines, b"")
    if first.lstrip().startswith(b"{"):
        _verify_ndjson(chain([first], lines), checker)
        report = checker.report("ndjson")
    elif first.startswith(b"seq,"):
        _verify_csv(chain([first], lines), checker)
        report = checker.report("csv")
    else:
        checker.problem("not a keyledger audit export (neither NDJSON nor its CSV header)" if first else "empty file")
        report = checker.report(None)
    if since is not None:
        report = with_problems(report, [f"since: {problem}" for problem in check_since(report, since)])
    return report if public_key is None else with_signature(report, public_key)


def with_problems(report: VerifyReport, problems: list[str]) -> VerifyReport:
    """``report`` with ``problems`` added (and so not ok when there are any)."""
    if not problems:
        return report
    return dataclasses.replace(report, ok=False, problems=[*report.problems, *problems])


def check_signature(manifest: Mapping[str, Any] | None, public_key: PublicKey) -> tuple[Signature, str | None]:
    """Whether ``manifest`` is signed by ``public_key``: the status, and the problem when it is not."""
    if manifest is None:
        return "missing", None  # the missing manifest is a problem already
    key_id, signature = manifest.get("key_id"), manifest.get("signature")
    if key_id is None and signature is None:
        return "missing", ("the manifest is not signed (no key_id, no signature): anyone could have made it "
                           "(an export from before signing, or one rewritten and re-chained)")
    if key_id != public_key.key_id:
        return "invalid", (f"the manifest is signed with key {key_id!r}, not with the given public key "
                           f"({public_key.key_id})")
    if not public_key.verify(manifest):
        return "invalid", ("the manifest's signature does not match: the manifest was altered, or the export was "
                           "rewritten and re-chained without the server's private key")
    return "verified", None


def with_signature(report: VerifyReport, public_key: PublicKey) -> VerifyReport:
    """``report`` with the manifest's signature checked against ``public_key``."""
    status, problem = check_signature(report.manifest, public_key)
    return with_problems(dataclasses.replace(report, signature=status), [problem] if problem else [])


def check_since(report: VerifyReport, old: Mapping[str, Any]) -> list[str]:
    """Why the export of ``report`` does not extend the earlier export whose manifest is ``old`` (none: it
    does). The rule: same ``from``; this ``to`` no earlier (null, or ≥ the old one, which must be set);
    made no earlier; at least the old ``count`` records; and its record ``seq = old count`` has the old
    ``last_digest``. As each digest covers every record before it, the first ``count`` records are then
    exactly those the earlier export handed out: none altered, removed, reordered or inserted since.
    (A record inserted into the old range after the old export was made, e.g. a usage event delivered
    late, breaks the rule too, and is reported.)"""
    new = report.manifest
    if new is None:
        return ["this export has no manifest to compare"]
    problems = []
    if old.get("format") != new.get("format"):
        problems.append(f"the earlier export's format is {old.get('format')!r}, this one's {new.get('format')!r}")
    if old.get("from") != new.get("from"):
        problems.append(f"the earlier export starts at {old.get('from')!r} and this one at {new.get('from')!r}: "
                        "only exports with the same from can be compared")
    old_to, new_to = old.get("to"), new.get("to")
    if new_to is not None and (old_to is None or not isinstance(new_to, str) or not isinstance(old_to, str)
                               or new_to < old_to):
        problems.append(f"this export ends (to {new_to!r}) before the earlier one (to {old_to!r}): it cannot hold "
                        "all the earlier records")
    old_made, new_made = old.get("generated_at"), new.get("generated_at")
    if isinstance(old_made, str) and isinstance(new_made, str) and old_made > new_made:
        problems.append(f"the earlier export was made at {old_made}, after this one ({new_made}): swapped?")
    count, last = old.get("count"), old.get("last_digest")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        problems.append("the earlier manifest has no valid count")
    elif report.count < count:
        problems.append(f"this export holds {report.count} records, fewer than the {count} the earlier one "
                        "handed out: records were removed")
    elif count > 0 and report.since_digest != last:
        problems.append(f"record seq {count} has digest {report.since_digest!r}, but the earlier export's "
                        f"last_digest is {last!r}: its first {count} records are not the ones the earlier export "
                        "handed out (altered, removed, reordered, or inserted into its range since, e.g. a usage "
                        "event delivered late)")
    return problems


def read_manifest(source: Iterable[bytes] | str | os.PathLike[str],
                  public_key: PublicKey | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """The manifest of an earlier export (the whole file, or only its manifest line or row), for ``since``:
    the manifest and the problems with it (its form, fields and digest; with ``public_key``, its signature).
    Its records, if present, are not checked: the signed manifest is what counts."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return read_manifest(iter(lambda: file.read(1 << 20), b""), public_key)
    last = b""
    for line in _lines(source):
        if line.strip():
            last = line
    manifest: object = None
    form: list[str] = []
    if last.startswith(b"{"):
        body = last[:-1] if last.endswith(b"\n") else last
        try:
            manifest = _object.decode(body).get("manifest")
        except msgspec.DecodeError:
            manifest = None
        form = _manifest_form(manifest, body, "ndjson")
    elif last.startswith(b"#manifest,"):
        raw = last if last.endswith(b"\r\n") else last.rstrip(b"\n") + b"\r\n"
        try:
            manifest = _object.decode(_csv_manifest_json(raw))
        except msgspec.DecodeError:
            manifest = None
        form = _manifest_form(manifest, raw, "csv")
    if not isinstance(manifest, dict):
        return None, ["no manifest: its last line is not a keyledger export manifest"]
    problems = [f"manifest {note}" for note in (*form, *_manifest_notes(manifest))]
    if public_key is not None:
        _, problem = check_signature(manifest, public_key)
        problems += [problem] if problem else []
    return manifest, problems
