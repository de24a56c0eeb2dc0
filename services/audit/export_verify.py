"""Verification of a compliance export (see :mod:`services.audit_export` for the format).

Recomputes the hash chain and the manifest of an NDJSON or CSV export, with flat memory,
and names every record that was altered, removed, inserted or reordered.
"""

from __future__ import annotations

import csv
import hashlib
import os
from binascii import hexlify
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import msgspec

from keyledger.services.audit.export import (
    CSV_COLUMNS,
    FIELDS,
    FORMAT,
    GENESIS,
    is_digest,
    manifest_digest,
    sorted_json,
)

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
        if not isinstance(seq, int) or isinstance(seq, bool) or not is_digest(prev) or not is_digest(digest):
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
        canonical = b'{"seq":%d,' % seq + sorted_json.encode(fields)[1:]
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
            values = dict(zip(CSV_COLUMNS, row, strict=True))
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
