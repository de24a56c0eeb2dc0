"""Unit tests for services.audit_export without a database: the chain, the manifest, both formats,
and that every kind of tampering is caught and named by the verifier (signing, the canonical form and
--since-manifest: test_signed_export.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyledger.domain.events import EVENT_CLASSES
from keyledger.services.audit.export import CSV_COLUMNS, FIELDS, FORMATS, GENESIS, MANIFEST_FIELDS, export_lines
from keyledger.services.audit.export_verify import verify_export
from keyledger.services.storage.audit_export_source import NOT_IN_DETAIL
from tests.support.export import (
    KEY,
    RECORDS,
    T0,
    RecordSource,
    canonical,
    check,
    data_of,
    export,
    record,
    records_start,
    rows_of,
)


def forged_row(fmt: str, seq: int, prev: str, fields: dict[str, str | None]) -> Any:
    """A record with a digest that is correct for its content and its prev: a careful forger's work."""
    digest = hashlib.sha256(bytes.fromhex(prev) + canonical(seq, fields)).hexdigest()
    if fmt == "ndjson":
        return {"seq": seq, **fields, "prev": prev, "digest": digest}
    values = {"seq": str(seq), **{k: v or "" for k, v in fields.items()}, "prev": prev, "digest": digest}
    return [values[column] for column in CSV_COLUMNS]


def digest_of(row: Any, fmt: str) -> str:
    return str(row["digest"] if fmt == "ndjson" else row[-1])


# -- an untouched export ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_an_untouched_export_verifies(fmt: str) -> None:
    report = verify_export([export(fmt)], KEY.public)
    assert (report.ok, report.verified, report.count, report.problems, report.fmt) == (
        True, True, len(RECORDS), [], fmt)
    assert (report.signature, report.key_id) == ("verified", KEY.key_id)
    unchecked = verify_export([export(fmt)])  # without the public key: consistent, but not shown to be genuine
    assert (unchecked.ok, unchecked.signature, unchecked.verified) == (True, "not_checked", False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rows_written_back_canonically_still_verify(fmt: str) -> None:
    data = export(fmt)
    assert data_of(rows_of(data, fmt), fmt) == data  # the tests' own canonical writer is the exporter's form


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_reads_a_file_and_chunks_cut_anywhere(fmt: str, tmp_path: Path) -> None:
    data = export(fmt)
    path = tmp_path / f"audit.{fmt}"
    path.write_bytes(data)
    assert verify_export(path, KEY.public).verified and verify_export(str(path), KEY.public).verified
    assert verify_export((data[i:i + 7] for i in range(0, len(data), 7)), KEY.public).verified


def test_ndjson_lines_are_the_canonical_record_plus_prev_and_digest() -> None:
    rows = rows_of(export("ndjson"), "ndjson")  # the records, then the manifest
    prev = GENESIS.hex()
    for seq, (row, fields) in enumerate(zip(rows[:-1], RECORDS, strict=True), start=1):
        assert row["seq"] == seq and row["prev"] == prev
        assert {k: row[k] for k in FIELDS} == fields
        assert row["digest"] == hashlib.sha256(bytes.fromhex(prev) + canonical(seq, fields)).hexdigest()
        prev = row["digest"]
    manifest = rows[-1]["manifest"]
    assert manifest["format"] == "keyledger-audit-v1" and manifest["count"] == len(RECORDS)
    assert manifest["first_digest"] == rows[0]["digest"] and manifest["last_digest"] == prev
    assert manifest["generated_at"] == "2026-03-01T12:00:00.000000Z"
    assert list(manifest) == list(MANIFEST_FIELDS) and manifest["key_id"] == KEY.key_id


def test_both_formats_carry_the_same_digests() -> None:
    ndjson = [row["digest"] for row in rows_of(export("ndjson"), "ndjson")[:-1]]
    csv_rows = rows_of(export("csv"), "csv")
    assert tuple(csv_rows[0]) == CSV_COLUMNS
    assert [row[-1] for row in csv_rows[1:-1]] == ndjson
    assert csv_rows[-1][0] == "#manifest"


def test_csv_defuses_spreadsheet_formulas_and_verify_undoes_it() -> None:
    rows = rows_of(export("csv"), "csv")
    agents = {row[CSV_COLUMNS.index("user_agent")] for row in rows[1:-1]}
    assert "'=HYPERLINK(\"http://x\")" in agents and "'-1+1" in agents and "''quoted" in agents
    assert not any(agent.startswith(("=", "+", "-", "@")) for agent in agents)
    assert verify_export([export("csv")], KEY.public).verified


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_empty_export_is_just_its_manifest(fmt: str) -> None:
    data = export(fmt, [])
    report = verify_export([data], KEY.public)
    assert (report.verified, report.count, report.problems, report.fmt) == (True, 0, [], fmt)


def test_empty_strings_are_exported_as_null() -> None:
    rows = rows_of(export("ndjson", [record(1, reason="")]), "ndjson")
    assert rows[0]["reason"] is None
    assert verify_export([export("csv", [record(1, reason="")])], KEY.public).verified


def test_unknown_format_and_reversed_range_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="format"):
        export_lines(RecordSource(RECORDS), "xml", key=KEY)
    with pytest.raises(ValueError, match="range"):
        export_lines(RecordSource(RECORDS), "csv", T0, T0 - timedelta(seconds=1), key=KEY)


def test_no_secret_event_field_reaches_the_detail() -> None:
    secret_fields = {name for cls in EVENT_CLASSES for name in cls.__struct_fields__ if "secret" in name}
    assert secret_fields and secret_fields <= set(NOT_IN_DETAIL)


# -- tampering -------------------------------------------------------------------------------------------

Tamper = Callable[[list[Any], str], None]


def alter_field(rows: list[Any], fmt: str) -> None:
    row = rows[records_start(fmt) + 4]  # seq 5
    if fmt == "ndjson":
        row["ip"] = "198.51.100.9"
    else:
        row[CSV_COLUMNS.index("ip")] = "198.51.100.9"


def delete_record(rows: list[Any], fmt: str) -> None:
    del rows[records_start(fmt) + 4]  # seq 5


def swap_records(rows: list[Any], fmt: str) -> None:
    i = records_start(fmt) + 4  # seq 5 and 6
    rows[i], rows[i + 1] = rows[i + 1], rows[i]


def insert_forged_in_the_middle(rows: list[Any], fmt: str) -> None:
    i = records_start(fmt) + 4  # after seq 4, chained from it and numbered 5, digest consistent
    rows.insert(i, forged_row(fmt, 5, digest_of(rows[i - 1], fmt), record(99, reason="nothing to see")))


def insert_forged_at_the_end(rows: list[Any], fmt: str) -> None:
    last = len(rows) - 2  # the last record, before the manifest
    rows.insert(last + 1, forged_row(fmt, len(RECORDS) + 1, digest_of(rows[last], fmt), record(99)))


def remove_manifest(rows: list[Any], fmt: str) -> None:
    rows.pop()


def edit_manifest_count(rows: list[Any], fmt: str) -> None:
    if fmt == "ndjson":
        rows[-1]["manifest"]["count"] = len(RECORDS) - 1
    else:
        manifest = json.loads(rows[-1][1])
        manifest["count"] = len(RECORDS) - 1
        rows[-1][1] = json.dumps(manifest)


TAMPERING: dict[str, tuple[Tamper, tuple[str, ...]]] = {
    "altered field": (alter_field, ("(seq 5)", "altered")),
    "deleted record": (delete_record, ("(seq 6)", "seq 6 where 5 was expected", "1 record(s) missing",
                                       "chain broken", "manifest count")),
    "swapped records": (swap_records, ("(seq 6)", "(seq 5)", "chain broken", "out of order")),
    "forged record, chained": (insert_forged_in_the_middle, ("(seq 5): seq 5 where 6 was expected",
                                                             "chain broken", "manifest count")),
    "forged record at the end": (insert_forged_at_the_end, ("manifest count", "manifest last_digest")),
    "manifest removed": (remove_manifest, ("no manifest",)),
    "manifest count edited": (edit_manifest_count, ("manifest count is 11", "manifest altered",
                                                    "signature does not match")),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", TAMPERING)
def test_tampering_is_detected_and_named(fmt: str, name: str) -> None:
    tamper, expected = TAMPERING[name]
    rows = rows_of(export(fmt), fmt)
    tamper(rows, fmt)
    check(verify_export([data_of(rows, fmt)], KEY.public), *expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_problems_name_the_line(fmt: str) -> None:
    rows = rows_of(export(fmt), fmt)
    alter_field(rows, fmt)
    data = data_of(rows, fmt)
    starts = (b'{"seq":5,', b"5,")  # CSV: some cells span lines (quoted newlines), so count physical lines
    line = next(number for number, text in enumerate(data.split(b"\n"), start=1) if text.startswith(starts))
    assert line == 5 or fmt == "csv"
    check(verify_export([data]), f"line {line} (seq 5): altered")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_cut_short_is_reported(fmt: str) -> None:
    data = export(fmt)
    check(verify_export([data[: len(data) // 2]]), "no manifest")


def test_a_record_outside_the_manifests_range_is_reported() -> None:
    data = export("ndjson", RECORDS, start=T0 + timedelta(seconds=2), end=T0 + timedelta(seconds=6))
    check(verify_export([data]), "before the export's from", "not before the export's to")


def test_garbage_is_not_an_export() -> None:
    check(verify_export([b"hello\nworld\n"]), "not a keyledger audit export")
    check(verify_export([]), "empty file")
    check(verify_export([b'{"seq": 1}\nnot json\n']), "line 1", "line 2: not a JSON object", "no manifest")


text_value = st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                                          max_size=40))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.fixed_dictionaries({name: text_value for name in ("user_agent", "reason", "detail",
                                                                            "website_id", "actor", "ip")}),
                       min_size=1, max_size=5),
       fmt=st.sampled_from(FORMATS))
def test_any_text_survives_the_round_trip_and_any_change_is_caught(values: list[dict[str, str | None]],
                                                                   fmt: str) -> None:
    records = [record(i + 1, **fields) for i, fields in enumerate(values)]
    rows = rows_of(export(fmt, records), fmt)
    assert verify_export([data_of(rows, fmt)], KEY.public).verified
    first = rows[records_start(fmt)]
    if fmt == "ndjson":
        first["reason"] = (first["reason"] or "") + "!"
    else:
        first[CSV_COLUMNS.index("reason")] += "!"
    check(verify_export([data_of(rows, fmt)], KEY.public), "(seq 1)", "altered")


def test_a_range_in_the_first_millennium_keeps_four_digit_years() -> None:
    data = export("ndjson", [], start=datetime(193, 1, 10, 8, 3, 4, 830000, tzinfo=UTC), end=T0)
    manifest = json.loads(data.splitlines()[-1])["manifest"]
    assert manifest["from"] == "0193-01-10T08:03:04.830000Z"
    assert verify_export([data], KEY.public).verified
