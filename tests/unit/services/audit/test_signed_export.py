"""Signed exports without a database: the manifest's Ed25519 signature, the refusal of every line that is not
exactly the exporter's (duplicate, unknown or missing fields, other spacing or escaping), and the
--since-manifest rule (a later export must reproduce an earlier one's chain head)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keyledger.services.audit.export import CSV_COLUMNS, FIELDS, FORMATS, GENESIS, manifest_digest
from keyledger.services.audit.export_verify import VerifyReport, check_since, read_manifest, verify_export
from keyledger.services.audit.signing import PublicKey, SigningKey, key_id_for
from tests.support.export import (
    KEY,
    RECORDS,
    T0,
    canonical,
    check,
    data_of,
    export,
    record,
    records_start,
    rows_of,
)

ATTACKER = SigningKey.generate()


def manifest_of(data: bytes, fmt: str) -> dict[str, Any]:
    rows = rows_of(data, fmt)
    return rows[-1]["manifest"] if fmt == "ndjson" else json.loads(rows[-1][1])  # type: ignore[no-any-return]


def rechain(rows: list[Any], fmt: str, key: SigningKey | None = None, keep_signature: bool = True) -> None:
    """What an attacker without the server's key can do: recompute every digest and the whole manifest after
    editing records, then keep the old signature, sign with a key of their own, or drop the signature."""
    first, prev = records_start(fmt), GENESIS.hex()
    digests: list[str] = []
    for row in rows[first:-1]:
        if fmt == "ndjson":
            fields = {name: row[name] for name in FIELDS}
            row["seq"], row["prev"] = len(digests) + 1, prev
            row["digest"] = prev = hashlib.sha256(bytes.fromhex(prev) + canonical(row["seq"], fields)).hexdigest()
        else:
            values = dict(zip(CSV_COLUMNS, row, strict=True))
            fields = {name: None if values[name] == "" else values[name].removeprefix("'") for name in FIELDS}
            row[0], row[-2] = str(len(digests) + 1), prev
            row[-1] = prev = hashlib.sha256(bytes.fromhex(prev) + canonical(len(digests) + 1, fields)).hexdigest()
        digests.append(prev)
    manifest = rows[-1]["manifest"] if fmt == "ndjson" else json.loads(rows[-1][1])
    manifest.update(count=len(digests), first_digest=digests[0] if digests else None,
                    last_digest=digests[-1] if digests else None)
    if key is not None:
        manifest["key_id"] = key.key_id
    elif not keep_signature:
        del manifest["key_id"], manifest["signature"]
    manifest["digest"] = manifest_digest(manifest)
    if key is not None:
        manifest["signature"] = key.sign(manifest)
    if fmt == "csv":
        rows[-1][1] = json.dumps(manifest)


def set_field(rows: list[Any], fmt: str, index: int, name: str, value: str) -> None:
    row = rows[records_start(fmt) + index]
    if fmt == "ndjson":
        row[name] = value
    else:
        row[CSV_COLUMNS.index(name)] = value


# -- the signature ---------------------------------------------------------------------------------------

def test_the_signature_is_ed25519_over_the_sorted_manifest_without_it() -> None:
    manifest = manifest_of(export("ndjson"), "ndjson")
    raw = KEY.public.raw
    assert manifest["key_id"] == key_id_for(raw) == "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]
    message = json.dumps({k: v for k, v in manifest.items() if k != "signature"}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=False).encode()
    Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(manifest["signature"]), message)  # raises if not
    assert manifest["digest"] == manifest_digest({k: v for k, v in manifest.items() if k != "signature"})


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_tampered_record_is_refused(fmt: str) -> None:
    rows = rows_of(export(fmt), fmt)
    set_field(rows, fmt, 2, "outcome", "FORBIDDEN")
    report = verify_export([data_of(rows, fmt)], KEY.public)
    check(report, "(seq 3)", "altered")
    assert report.signature == "verified"  # the manifest itself is genuine: the records are not


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_rewritten_and_rechained_without_the_key_is_refused(fmt: str) -> None:
    rows = rows_of(export(fmt), fmt)
    set_field(rows, fmt, 2, "outcome", "FORBIDDEN")
    del rows[records_start(fmt) + 5]
    rechain(rows, fmt)
    data = data_of(rows, fmt)
    assert verify_export([data]).ok  # self-consistent: what the chain alone could never tell
    report = verify_export([data], KEY.public)
    check(report, "signature does not match", "re-chained without the server's private key")
    assert (report.signature, report.verified) == ("invalid", False)
    assert report.problems == [next(p for p in report.problems if "signature" in p)]  # nothing else is wrong


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_manifest_signed_with_another_key_or_unsigned_is_refused(fmt: str) -> None:
    rows = rows_of(export(fmt), fmt)
    set_field(rows, fmt, 0, "ip", "198.51.100.1")
    rechain(rows, fmt, key=ATTACKER)
    report = verify_export([data_of(rows, fmt)], KEY.public)
    check(report, f"signed with key '{ATTACKER.key_id}', not with the given public key ({KEY.key_id})")
    assert report.signature == "invalid"
    assert verify_export([data_of(rows, fmt)], ATTACKER.public).verified  # the attacker's key is not the server's
    rechain(rows, fmt, keep_signature=False)
    unsigned = verify_export([data_of(rows, fmt)], KEY.public)
    check(unsigned, "the manifest is not signed")
    assert unsigned.signature == "missing"


def test_an_unsigned_export_is_refused_when_a_key_is_given() -> None:
    rows = rows_of(export("ndjson"), "ndjson")
    rechain(rows, "ndjson", keep_signature=False)  # the same records, a manifest without key_id and signature
    data = data_of(rows, "ndjson")
    assert b'"signature"' not in data and verify_export([data]).ok
    check(verify_export([data], KEY.public), "the manifest is not signed")


def test_the_public_key_parses_from_base64_pem_and_the_endpoint_json() -> None:
    pem = Ed25519PublicKey.from_public_bytes(KEY.public.raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    answer = json.dumps({"key_id": KEY.key_id, "algorithm": "Ed25519", "public_key": KEY.public.base64})
    for text in (KEY.public.base64, f"  {KEY.public.base64}\n", pem, answer):
        assert PublicKey.parse(text) == KEY.public
    for bad, message in (("abc", "base64"), (base64.b64encode(b"x" * 31).decode(), "32 bytes"),
                         (answer.replace(KEY.key_id, ATTACKER.key_id), "not the id of its public key"),
                         ("-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----", "PEM")):
        with pytest.raises(ValueError, match=message):
            PublicKey.parse(bad)


def test_no_private_key_is_shown() -> None:
    seed = base64.b64encode(KEY.seed()).decode()
    assert seed not in repr(KEY) and KEY.key_id in repr(KEY)
    with pytest.raises(ValueError) as refused:
        SigningKey.from_base64(seed[:-4])
    assert seed[:-4] not in str(refused.value)
    assert SigningKey.from_base64(seed).key_id == KEY.key_id
    assert seed.encode() not in export("ndjson") and KEY.seed() not in export("ndjson")


# -- the canonical form ------------------------------------------------------------------------------------

def ndjson_lines() -> list[bytes]:
    return export("ndjson").splitlines(keepends=True)


def test_a_duplicated_field_is_refused() -> None:
    lines = ndjson_lines()
    original = json.loads(lines[0])
    assert original["outcome"] == "VALID"
    # A reader that keeps the first "outcome" sees FORBIDDEN; the chain (and msgspec) keep the last: VALID.
    lines[0] = lines[0].replace(b'"outcome":"VALID"', b'"outcome":"FORBIDDEN","outcome":"VALID"')
    report = verify_export([b"".join(lines)], KEY.public)
    text = check(report, "line 1 (seq 1): duplicate field(s) outcome", "readers may see different values")
    assert "altered" not in text  # its digest matches what one reader sees: only the form gives it away
    manifest = ndjson_lines()
    manifest[-1] = manifest[-1].replace(b'"count":12', b'"count":11,"count":12')
    check(verify_export([b"".join(manifest)], KEY.public), "line 13: manifest duplicate field(s) count")


def test_a_duplicated_field_in_a_csv_manifest_is_refused() -> None:
    data = export("csv")
    head, _, last = data.rpartition(b"#manifest,")
    forged = head + b"#manifest," + last.replace(b'""count"":12', b'""count"":11,""count"":12')
    assert forged != data
    check(verify_export([forged], KEY.public), "manifest duplicate field(s) count")


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unknown_field_is_refused_even_when_chained(fmt: str) -> None:
    data = export(fmt)
    if fmt == "ndjson":
        rows = rows_of(data, fmt)
        rows[0]["note"] = "approved by the CFO"
        prev = rows[0]["prev"]
        fields = {k: v for k, v in rows[0].items() if k not in ("seq", "prev", "digest")}
        rows[0]["digest"] = hashlib.sha256(bytes.fromhex(prev) + canonical(1, fields)).hexdigest()
        check(verify_export([data_of(rows, fmt)], KEY.public), "line 1 (seq 1): unknown field(s): note")
    else:
        lines = data.split(b"\r\n")
        lines[0] += b",note"
        check(verify_export([b"\r\n".join(lines)], KEY.public), "not the keyledger-audit-v1 CSV header")
    rows = rows_of(data, fmt)
    manifest = rows[-1]["manifest"] if fmt == "ndjson" else json.loads(rows[-1][1])
    manifest["approved"] = True
    if fmt == "csv":
        rows[-1][1] = json.dumps(manifest)
    check(verify_export([data_of(rows, fmt)], KEY.public), "manifest has unknown field(s): approved")


def test_a_missing_field_is_refused() -> None:
    rows = rows_of(export("ndjson"), "ndjson")
    del rows[0]["website_id"]
    check(verify_export([data_of(rows, "ndjson")], KEY.public), "(seq 1): missing field(s): website_id")


@pytest.mark.parametrize("change", ["spacing", "key order", "escaping", "empty string", "CRLF", "blank line"])
def test_a_line_not_in_canonical_form_is_refused(change: str) -> None:
    lines = ndjson_lines()
    row = json.loads(lines[1])
    if change == "spacing":
        lines[1] = json.dumps(row, ensure_ascii=False).encode() + b"\n"
    elif change == "key order":
        lines[1] = json.dumps(dict(reversed(row.items())), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    elif change == "escaping":
        lines[1] = lines[1].replace(b'"action":"verify"', b'"action":"verif\\u0079"')  # the same text to JSON
        assert json.loads(lines[1]) == row
    elif change == "empty string":
        lines[1] = lines[1].replace(b'"data":null', b'"data":""')
    elif change == "CRLF":
        lines[1] = lines[1][:-1] + b"\r\n"
    else:
        lines.insert(1, b"\n")
    report = verify_export([b"".join(lines)], KEY.public)
    expected = {"empty string": "empty string where the exporter writes null", "blank line": "line 2: a blank line"}
    check(report, expected.get(change, "line 2 (seq 2): not in the exporter's canonical form"))


@pytest.mark.parametrize("change", ["unquoted text", "quoted number", "no formula guard", "LF"])
def test_a_csv_row_not_in_canonical_form_is_refused(change: str) -> None:
    data = export("csv", [record(1, user_agent="svc/1"), record(2, user_agent="=1+1")])
    lines = data.split(b"\r\n")
    if change == "unquoted text":
        lines[1] = lines[1].replace(b'"svc/1"', b"svc/1")
    elif change == "quoted number":
        lines[1] = b'"1"' + lines[1][1:]
    elif change == "no formula guard":
        lines[2] = lines[2].replace(b"\"'=1+1\"", b'"=1+1"')
    else:
        lines[1] += b"\n"
        lines[1:3] = [lines[1] + lines[2]]
    forged = b"\r\n".join(lines)
    assert forged != data
    check(verify_export([forged], KEY.public), "not in the exporter's canonical form")


# -- --since-manifest --------------------------------------------------------------------------------------

def since(new: bytes, old: bytes, key: PublicKey | None = KEY.public) -> VerifyReport:
    old_manifest, problems = read_manifest([old], key)
    assert old_manifest is not None and problems == []
    return verify_export([new], key, since=old_manifest)


@pytest.mark.parametrize(("old_fmt", "new_fmt"), [("ndjson", "ndjson"), ("csv", "ndjson"), ("ndjson", "csv")])
def test_a_later_export_that_extends_an_earlier_one_is_accepted(old_fmt: str, new_fmt: str) -> None:
    old = export(old_fmt, RECORDS[:5])
    new = export(new_fmt, RECORDS)
    report = since(new, old)
    assert report.verified, report.problems
    assert report.since_digest == manifest_of(old, old_fmt)["last_digest"]
    assert since(new, export(old_fmt, [])).verified  # an empty earlier export: nothing to reproduce
    assert since(new, new).verified  # the same export twice


def test_the_earlier_manifest_alone_is_enough() -> None:
    old = export("ndjson", RECORDS[:5]).splitlines(keepends=True)[-1]  # only its manifest line was kept
    assert since(export("ndjson"), old).verified


def test_a_later_export_that_rewrote_history_is_refused() -> None:
    old = export("ndjson", RECORDS[:5])
    rewritten = [*RECORDS[:2], record(3, reason="nothing happened"), *RECORDS[3:]]
    new = export("ndjson", rewritten)  # re-exported and genuinely signed after the store was rewritten
    assert verify_export([new], KEY.public).verified  # on its own, it verifies
    report = since(new, old)
    check(report, "since: record seq 5 has digest", "its first 5 records are not the ones the earlier export")


def test_a_later_export_with_records_removed_or_inserted_is_refused() -> None:
    old = export("ndjson", RECORDS[:5])
    check(since(export("ndjson", RECORDS[:3]), old), "holds 3 records, fewer than the 5")
    check(since(export("ndjson", [*RECORDS[:2], *RECORDS[3:]]), old), "record seq 5 has digest")
    late = [*RECORDS[:3], {**record(99), "at": RECORDS[2]["at"]}, *RECORDS[3:]]  # e.g. a usage event delivered late
    check(since(export("ndjson", late), old), "record seq 5 has digest")


def test_exports_of_different_ranges_cannot_be_compared() -> None:
    old = export("ndjson", RECORDS[:5], start=T0)
    check(since(export("ndjson"), old), "the earlier export starts at '2026-03-01T12:00:00.000000Z' and this one at "
          "None")
    bounded_old = export("ndjson", RECORDS[:5], end=T0.replace(hour=13))
    bounded_new = export("ndjson", RECORDS[:5], end=T0.replace(hour=12, minute=30))
    check(since(bounded_new, bounded_old), "this export ends (to '2026-03-01T12:30:00.000000Z') before the earlier")
    later = verify_export([export("ndjson")], since=manifest_of(bounded_old, "ndjson"))  # to: null covers 13:00
    assert later.ok and check_since(later, manifest_of(bounded_old, "ndjson")) == []


def test_an_altered_or_forged_earlier_manifest_is_refused() -> None:
    old = export("ndjson", RECORDS[:5])
    lines = old.splitlines(keepends=True)
    lines[-1] = lines[-1].replace(b'"count":5', b'"count":4')
    manifest, problems = read_manifest([b"".join(lines)], KEY.public)
    assert manifest is not None and manifest["count"] == 4
    assert any("manifest altered" in p for p in problems) and any("signature does not match" in p for p in problems)
    forged = export("ndjson", RECORDS[:5], key=ATTACKER)
    _, problems = read_manifest([forged], KEY.public)
    assert problems == [f"the manifest is signed with key '{ATTACKER.key_id}', not with the given public key "
                        f"({KEY.key_id})"]
    assert read_manifest([b"not an export\n"]) == (None, ["no manifest: its last line is not a keyledger export "
                                                          "manifest"])
