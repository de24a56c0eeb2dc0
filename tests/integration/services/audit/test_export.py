"""The compliance export against a real Postgres: usage and lifecycle rows interleaved in time order,
the half-open [from, to) range, no secrets in the output, and exports that verify."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.services.audit.export import FORMATS, count_records, export_lines
from keyledger.services.audit.export_verify import verify_export
from keyledger.services.audit.signing import SigningKey
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.audit_queries import AuditFilter, AuditQueries
from keyledger.services.storage.database import Database, open_database
from tests.support.audit_trail import TRICKY_AGENT, Trail, usage_row, write_usage

KEY = SigningKey.generate()  # made at run time: no private key is kept in the tests


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _records(db: Database, start: datetime | None = None,
                   end: datetime | None = None) -> list[dict[str, str | None]]:
    lines = (await _export(db, "ndjson", start, end)).splitlines()[:-1]  # the last line is the manifest
    return [{k: v for k, v in json.loads(line).items() if k not in ("seq", "prev", "digest")} for line in lines]


async def _export(db: Database, fmt: str, start: datetime | None = None, end: datetime | None = None,
                  **kwargs: Any) -> bytes:
    return b"".join([chunk async for chunk in export_lines(ExportSource(db), fmt, start, end, key=KEY, **kwargs)])


async def test_usage_and_lifecycle_come_out_interleaved_in_time_order(db: Database,
                                                                     trail: Trail) -> None:
    records = await _records(db)
    assert [(r["at"], r["id"]) for r in records] == [(_iso(at), id_) for at, id_ in trail.order]
    kinds = [r["kind"] for r in records]
    assert kinds == ["lifecycle" if id_ in trail.lifecycle else "usage" for _, id_ in trail.order]
    assert kinds[0] == kinds[-1] == "usage" and kinds.count("lifecycle") == 3  # interleaved, not appended
    assert await count_records(ExportSource(db)) == len(records) == 8


async def test_lifecycle_records_are_flattened_without_secrets(db: Database, trail: Trail) -> None:
    lifecycle = [r for r in await _records(db) if r["kind"] == "lifecycle"]
    assert [r["action"] for r in lifecycle] == ["key.created", "key.rotated", "key.revoked"]
    for record in lifecycle:
        assert record["outcome"] == "OK" and record["key_id"] == "key-a" and record["actor"] == "admin:root"
        assert (record["ip"], record["user_agent"], record["request_id"]) == (
            "198.51.100.7", "keyledger-cli/1", "req-1")
        assert record["detail"] is not None and "secret" not in record["detail"]
    created_, rotated, revoked = lifecycle
    assert created_["organization_id"] == "org-1" and created_["start"] == "kl_key-a"
    assert json.loads(created_["detail"] or "")["name"] == "ingest"
    assert rotated["start"] == "kl_key-aXy9Q" and revoked["reason"] == "leaked"


async def test_usage_values_survive_exactly(db: Database, trail: Trail) -> None:
    usage = [r for r in await _records(db) if r["kind"] == "usage"]
    assert usage[0]["reason"] is None  # '' is exported as null
    tricky = next(r for r in usage if r["user_agent"] == TRICKY_AGENT)
    assert tricky["ip"] == "=1+2" and tricky["actor"] is None and tricky["detail"] is None


async def test_the_range_is_half_open(db: Database, trail: Trail) -> None:
    start, end = trail.order[1][0], trail.order[6][0]  # from the key's creation to the first day-after usage
    records = await _records(db, start, end)
    assert [r["id"] for r in records] == [id_ for at, id_ in trail.order if start <= at < end]
    assert len(records) == 5
    assert await count_records(ExportSource(db), start, end) == 5
    assert await count_records(ExportSource(db), end, end) == 0


@pytest.mark.parametrize("fmt", FORMATS)
async def test_exports_verify_and_never_hold_a_secret(db: Database, trail: Trail, fmt: str) -> None:
    seen: list[int] = []
    data = await _export(db, fmt, progress=seen.append, batch_size=3)
    assert seen == [3, 6, 8]
    assert b"SECRET" not in data and b"secret" not in data and b"argon2" not in data
    report = verify_export([data], KEY.public)
    assert report.verified, report.problems
    assert report.count == 8
    ranged = await _export(db, fmt, trail.created, trail.revoked + timedelta(microseconds=1))
    assert verify_export([ranged], KEY.public).verified and verify_export([ranged]).count == 5


async def test_both_formats_chain_the_same_digests(db: Database, trail: Trail) -> None:
    ndjson = [json.loads(line) for line in (await _export(db, "ndjson")).splitlines()]
    csv_text = (await _export(db, "csv")).decode()
    assert all(row["digest"] in csv_text for row in ndjson[:-1])
    assert ndjson[-1]["manifest"]["last_digest"] == ndjson[-2]["digest"]


async def test_an_empty_trail_exports_only_its_manifest(db: Database) -> None:
    data = await _export(db, "ndjson")
    assert data.count(b"\n") == 1 and b'"count":0' in data
    assert verify_export([data], KEY.public).verified


async def test_unknown_format_is_refused_before_any_query(db: Database) -> None:
    with pytest.raises(ValueError, match="format"):
        export_lines(ExportSource(db), "xml", key=KEY)


async def test_an_abandoned_export_leaves_the_connection_usable(database_url: str, trail: Trail) -> None:
    async with open_database(database_url, max_size=1) as single:  # the next export must reuse that connection
        source = ExportSource(single)
        async with contextlib.aclosing(export_lines(source, "ndjson", batch_size=2, key=KEY)) as chunks:
            async for _ in chunks:
                break
        assert await count_records(source) == 8
        assert len((await _export(single, "ndjson")).splitlines()) == 9


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
async def test_audit_pages_walk_the_trail_newest_first_without_gaps_or_repeats(
        db: Database, pool: AsyncConnectionPool, trail: Trail, limit: int) -> None:
    tie = trail.order[3][0]
    extra = [usage_row(tie, key_id="key-b", organization_id="org-2") for _ in range(3)]  # more ties on one instant
    async with pool.connection() as conn:
        await write_usage(conn, extra)
    everything = [(at, "lifecycle" if id_ in trail.lifecycle else "usage", id_) for at, id_ in trail.order]
    everything += [(row["at"], "usage", row["id"]) for row in extra]
    for where in (AuditFilter(), AuditFilter(key_id="key-a"), AuditFilter(organization_id="org-2"),
                  AuditFilter(kind="usage", outcome="REVOKED")):
        walked, cursor = [], None
        for _ in range(50):
            page, cursor = await AuditQueries(db).page(where, limit, cursor)
            walked += [(r["at"], r["kind"], r["id"]) for r in page]
            if cursor is None:
                break
        wanted = sorted((e for e in everything if _matches(e, where, extra, trail)), reverse=True)
        assert walked == wanted, where


def _matches(entry: tuple[datetime, str, str], where: AuditFilter, extra: list[dict[str, Any]], trail: Trail) -> bool:
    at, kind, id_ = entry
    org2 = {row["id"] for row in extra}
    if where.key_id == "key-a":
        return id_ not in org2
    if where.organization_id == "org-2":
        return id_ in org2
    if where.outcome == "REVOKED":
        return kind == "usage" and at > trail.revoked and id_ not in org2
    return True
