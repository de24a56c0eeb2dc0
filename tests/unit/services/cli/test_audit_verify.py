"""``keyledger audit verify`` on files (no servers): what it prints and its exit codes
(0 verified, 1 refused, 2 usage, 3 signature not checked; 4, a key --server could not give, is in e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyledger.services.cli.audit import REFUSED, UNCHECKED, USAGE, VERIFIED
from keyledger.services.cli.main import main
from tests.support.export import KEY, RECORDS, export, record


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A genuine export, an earlier one it extends, one that rewrote history, and the public key in a file."""
    paths = {name: tmp_path / name for name in ("audit.ndjson", "earlier.ndjson", "rewritten.ndjson", "key.json")}
    paths["audit.ndjson"].write_bytes(export("ndjson"))
    paths["earlier.ndjson"].write_bytes(export("ndjson", RECORDS[:4]))
    paths["rewritten.ndjson"].write_bytes(export("ndjson", [record(1, reason="nothing happened"), *RECORDS[1:]]))
    paths["key.json"].write_text(json.dumps({"key_id": KEY.key_id, "algorithm": "Ed25519",
                                             "public_key": KEY.public.base64}))
    return paths


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["audit", "verify", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_genuine_export_verifies_with_the_key_in_any_form(files: dict[str, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    for key in (KEY.public.base64, files["key.json"]):
        code, out = run(capsys, files["audit.ndjson"], "--public-key", key)
        assert code == VERIFIED == 0, out
        assert out.startswith(f"OK: {len(RECORDS)} records; signature by {KEY.key_id} verified")


def test_without_a_key_the_signature_is_unchecked_and_that_is_no_success(files: dict[str, Path],
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, files["audit.ndjson"])
    assert code == UNCHECKED == 3
    assert out.startswith("UNVERIFIED:") and "signature was NOT checked" in out


def test_a_tampered_export_is_refused_with_or_without_a_key(files: dict[str, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = files["audit.ndjson"]
    path.write_bytes(path.read_bytes().replace(b'"outcome":"VALID"', b'"outcome":"FORBIDDEN"', 1))
    for extra in ([], ["--public-key", KEY.public.base64]):
        code, out = run(capsys, path, *extra)
        assert code == REFUSED == 1
        assert out.startswith("TAMPERED:") and "(seq 1): altered" in out


def test_a_duplicate_field_is_refused(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = files["audit.ndjson"]
    path.write_bytes(path.read_bytes().replace(b'"outcome":"VALID"', b'"outcome":"FORBIDDEN","outcome":"VALID"', 1))
    code, out = run(capsys, path, "--public-key", KEY.public.base64)
    assert code == REFUSED and "duplicate field(s) outcome" in out


def test_since_manifest_accepts_an_extension_and_refuses_a_rewrite(files: dict[str, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    key = ["--public-key", KEY.public.base64]
    code, out = run(capsys, files["audit.ndjson"], "--since-manifest", files["earlier.ndjson"], *key)
    assert code == VERIFIED, out
    assert f"extends {files['earlier.ndjson']}" in out
    code, out = run(capsys, files["rewritten.ndjson"], "--since-manifest", files["earlier.ndjson"], *key)
    assert code == REFUSED and "since: record seq 4 has digest" in out
    code, out = run(capsys, files["audit.ndjson"], "--since-manifest", files["earlier.ndjson"])
    assert code == UNCHECKED, out  # extends it, but no signature was checked


def test_json_output_carries_the_verdict(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, files["audit.ndjson"], "--json", "--public-key", files["key.json"])
    report = json.loads(out)
    assert code == VERIFIED and report["exit_code"] == VERIFIED and report["verified"] is True
    assert (report["signature"], report["key_id"], report["count"]) == ("verified", KEY.key_id, len(RECORDS))
    code, out = run(capsys, files["audit.ndjson"], "--json")
    assert (code, json.loads(out)["verified"], json.loads(out)["signature"]) == (UNCHECKED, False, "not_checked")


def test_usage_errors(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, files["audit.ndjson"], "--public-key", "not-a-key")
    assert code == USAGE == 2 and "--public-key: not base64" in out
    code, out = run(capsys, tmp_path / "missing.ndjson", "--public-key", KEY.public.base64)
    assert code == USAGE and "cannot read" in out
    with pytest.raises(SystemExit) as both:
        run(capsys, files["audit.ndjson"], "--public-key", KEY.public.base64, "--server", "http://127.0.0.1:1")
    assert both.value.code == USAGE
