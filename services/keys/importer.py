"""Importing keys made by another key service: NDJSON in (one exported key a line), one result a line out.

Every line is mapped (``domain.import_formats``), checked and appended on its own: a bad line is reported
with its number and the reason, and the others are imported. A line whose key is there already (the same
source, organization and source key id) is ``unchanged``: importing a file twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from keyledger.domain.errors import DomainError, Forbidden, KeyAlreadyExists, ValidationError
from keyledger.domain.import_formats import to_import
from keyledger.domain.importing import SOURCES
from keyledger.domain.key import KeyState, fold, import_lookup
from keyledger.domain.recorded import Metadata
from keyledger.services.keys.service import KeyService

MAX_LINES = 10_000
MAX_IMPORT_BYTES = 32 * 1024 * 1024  # 10,000 exported rows of a few KiB each
Status = Literal["imported", "unchanged", "error"]


class TooManyLines(ValidationError):
    """More than :data:`MAX_LINES` keys in one request (HTTP 413)."""


class ImportLineResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What became of one line: ``imported`` (as ``key_id``), ``unchanged`` (imported before) or ``error``
    (``code`` and ``error`` say why; nothing of it was imported)."""

    line: int
    status: Status
    source_id: str | None = None
    key_id: str | None = None
    code: str | None = None
    error: str | None = None


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of an import: counts, then one result per non-blank line, in order."""

    format: str
    imported: int
    unchanged: int
    failed: int
    results: list[ImportLineResult]


def split_lines(body: bytes) -> list[tuple[int, bytes]]:
    """The non-blank lines of an NDJSON body with their numbers (from 1); ValidationError when it is not
    UTF-8 text of JSON objects (judged by its first line) or empty, TooManyLines beyond 10,000."""
    try:
        body.decode()
    except UnicodeDecodeError:
        raise ValidationError("the body is not UTF-8 text: send NDJSON, one exported key a line") from None
    lines = [(number, line) for number, line in enumerate(body.splitlines(), 1) if line.strip()]
    if not lines:
        raise ValidationError("the body holds no keys: send NDJSON, one exported key a line")
    if len(lines) > MAX_LINES:
        raise TooManyLines(f"{len(lines)} keys in one import; at most {MAX_LINES} a request")
    first = lines[0][1].strip()
    if not first.startswith(b"{"):
        raise ValidationError("the body is not NDJSON: each line must be one JSON object (an exported key)")
    return lines


async def import_lines(keys: KeyService, lines: list[tuple[int, bytes]], source: str, *, prefix: str,
                       organization_id: str | None, grantor: KeyState | None, metadata: Metadata | None,
                       imported_key: Callable[[str], KeyState | None]) -> ImportReport:
    """Import each line as ``source`` exports keys, into ``organization_id`` (None: each row's own);
    ``grantor`` (the acting admin key, None for the operator) must hold what each key grants.
    ``imported_key`` finds an imported key by its lookup (a secret imported under another id is refused)."""
    if source not in SOURCES:
        raise ValidationError(f"format must be one of {', '.join(SOURCES)}")
    results, last = [], 0
    here: dict[str, KeyState] = {}  # what this import brought in so far, by lookup (a file may repeat a secret)

    def known(lookup: str) -> KeyState | None:
        return here.get(lookup) or imported_key(lookup)

    for number, line in lines:
        result, position, state = await _one(keys, number, line, source, prefix, organization_id, grantor,
                                             metadata, known)
        if state is not None and state.import_lookup is not None:
            here[state.import_lookup] = state
        results.append(result)
        last = max(last, position)
    if last:
        await keys.settle(last)
    counts = {status: sum(r.status == status for r in results) for status in ("imported", "unchanged", "error")}
    return ImportReport(format=source, imported=counts["imported"], unchanged=counts["unchanged"],
                        failed=counts["error"], results=results)


async def _one(keys: KeyService, number: int, line: bytes, source: str, prefix: str, organization_id: str | None,
               grantor: KeyState | None, metadata: Metadata | None,
               imported_key: Callable[[str], KeyState | None]) -> tuple[ImportLineResult, int, KeyState | None]:
    source_id = None
    try:
        row = msgspec.json.decode(line)
        if not isinstance(row, dict):
            raise ValidationError("the line is not a JSON object")
        command = to_import(source, row, organization_id, prefix)
        source_id, key_id = command.source_id, command.create.key_id
        lookup = import_lookup(command.create.secret_hash)
        other = imported_key(lookup) if lookup is not None else None
        if other is not None:
            if other.key_id == key_id:
                return ImportLineResult(line=number, status="unchanged", source_id=source_id, key_id=key_id), 0, None
            raise ValidationError("a key with the same secret is imported already (under another source id)")
        recorded = await keys.import_key(command, metadata=metadata, grantor=grantor, settle=False)
    except msgspec.DecodeError:
        return _error(number, source_id, "VALIDATION_ERROR", "the line is not valid JSON"), 0, None
    except KeyAlreadyExists:
        return ImportLineResult(line=number, status="unchanged", source_id=source_id, key_id=key_id), 0, None
    except Forbidden as exc:
        return _error(number, source_id, "FORBIDDEN", str(exc)), 0, None
    except DomainError as exc:
        return _error(number, source_id, "VALIDATION_ERROR", str(exc)), 0, None
    result = ImportLineResult(line=number, status="imported", source_id=source_id, key_id=key_id)
    return result, recorded[-1].global_position, fold(r.event for r in recorded)


def _error(number: int, source_id: str | None, code: str, message: str) -> ImportLineResult:
    return ImportLineResult(line=number, status="error", source_id=source_id, code=code,
                            error=f"line {number}: {message}")
