"""The signing key and the export anchors against a real Postgres: one key for every replica, kept only by the
application, append-only tables, each export's chain head recorded, and a later export checked against an
earlier one after the store was rewritten behind the application's back."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.services.audit.export import export_lines, manifest_from_anchor
from keyledger.services.audit.export_verify import read_manifest, verify_export
from keyledger.services.audit.notary import AuditNotary, notary_for
from keyledger.services.audit.signing import SigningKey
from keyledger.services.config import Hidden, Settings
from keyledger.services.devstack.stack import StackInfo
from keyledger.services.storage.audit_export_anchors import ExportAnchors
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.audit_signing_keys import SigningKeyTable
from keyledger.services.storage.database import Database, StorageError, open_database
from tests.support.audit_trail import Trail, usage_row, write_usage

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


async def _export(db: Database, notary: AuditNotary, at: datetime) -> bytes:
    key = await notary.signing_key()
    chunks = export_lines(ExportSource(db), "ndjson", key=key, anchor=notary.record, generated_at=at)
    return b"".join([chunk async for chunk in chunks])


async def test_replicas_starting_together_share_one_key_kept_in_postgres(db: Database, database_url: str,
                                                                        pool: AsyncConnectionPool) -> None:
    async with open_database(database_url) as other, open_database(database_url) as third:
        notaries = [notary_for(database, Settings()) for database in (db, other, third)]
        keys = await asyncio.gather(*(notary.signing_key() for notary in notaries))
    assert len({key.key_id for key in keys}) == 1
    async with pool.connection() as conn:
        rows = await (await conn.execute("SELECT key_id, private_key, public_key FROM audit_signing_keys")).fetchall()
    assert len(rows) == 1
    (key_id, private_key, public_key), key = rows[0], keys[0]
    assert (key_id, bytes(private_key), bytes(public_key)) == (key.key_id, key.seed(), key.public.raw)
    assert await notaries[1].public_key() == key.public == await notaries[2].public_key(key.key_id)
    assert await notaries[0].public_key("ed25519:0000000000000000") is None


async def test_the_private_key_never_reaches_the_server_log(database_url: str, pool: AsyncConnectionPool,
                                                           stack_info: StackInfo | None) -> None:
    async with pool.connection() as conn:  # every statement and its parameters into the server log
        dbname = conn.info.dbname
        await conn.execute(f'ALTER DATABASE "{dbname}" SET log_statement = \'all\'')
    async with open_database(database_url) as fresh:  # connections opened after that setting
        key = await notary_for(fresh, Settings()).signing_key()
        assert (await notary_for(fresh, Settings()).signing_key()).key_id == key.key_id  # read back
    seed = key.seed()
    if stack_info is not None:
        logs = "".join(p.read_text(errors="replace") for p in stack_info.data_dir.glob("*.log"))
        assert "INSERT INTO audit_signing_keys" in logs and key.key_id in logs  # statement logging was on
        for shown in (seed.hex(), base64.b64encode(seed).decode(), base64.b64encode(seed).decode()[:20]):
            assert shown not in logs


async def test_only_the_application_may_read_the_keys(db: Database, pool: AsyncConnectionPool) -> None:
    await notary_for(db, Settings()).signing_key()
    role = f"kl_reader_{uuid.uuid4().hex[:8]}"
    async with pool.connection() as conn:
        await conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
        try:
            for table, readable in (("audit_signing_keys", False), ("audit_export_anchors", False)):
                row = await (await conn.execute("SELECT has_table_privilege(%s, %s, 'SELECT')",
                                                (role, table))).fetchone()
                assert row is not None and row[0] is readable, table
            async with conn.transaction():
                await conn.execute(f'SET LOCAL ROLE "{role}"')
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute("SELECT private_key FROM audit_signing_keys")
        finally:
            await conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.parametrize("statement", ["UPDATE {} SET key_id = key_id", "DELETE FROM {}", "TRUNCATE {}"])
@pytest.mark.parametrize("table", ["audit_signing_keys", "audit_export_anchors"])
async def test_keys_and_anchors_are_append_only(db: Database, pool: AsyncConnectionPool, trail: Trail,
                                                table: str, statement: str) -> None:
    notary = notary_for(db, Settings())
    await _export(db, notary, T0)
    if table == "audit_export_anchors":
        statement = statement.replace("key_id = key_id", "record_count = 0")
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            await conn.execute(statement.format(table))
        row = await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone()
    assert row is not None and row[0] == 1


async def test_a_configured_key_signs_and_is_never_stored(db: Database, pool: AsyncConnectionPool,
                                                          trail: Trail) -> None:
    key = SigningKey.generate()
    notary = notary_for(db, Settings(audit_signing_key=Hidden(base64.b64encode(key.seed()).decode())))
    data = await _export(db, notary, T0)
    assert verify_export([data], key.public).verified
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM audit_signing_keys")).fetchone()
    assert row is not None and row[0] == 0


async def test_each_export_records_its_chain_head(db: Database, trail: Trail) -> None:
    notary = notary_for(db, Settings())
    first, second = await _export(db, notary, T0), await _export(db, notary, T0 + timedelta(hours=1))
    recent = await ExportAnchors(db).recent(5)
    assert [anchor.generated_at for anchor in recent] == [T0 + timedelta(hours=1), T0]
    key = await notary.signing_key()
    for anchor, data in zip(recent, (second, first), strict=True):
        manifest, problems = read_manifest([data], key.public)
        assert problems == [] and manifest is not None
        assert manifest_from_anchor(anchor) == manifest  # the signed manifest, rebuilt exactly from the row
        assert (anchor.record_count, anchor.last_digest, anchor.key_id) == (8, manifest["last_digest"], key.key_id)


async def test_an_export_whose_head_cannot_be_recorded_has_no_manifest(db: Database, trail: Trail) -> None:
    real = notary_for(db, Settings())

    class Refusing:
        async def record(self, anchor: object) -> None:
            raise StorageError("OperationalError 08006: connection refused")

    notary = AuditNotary(SigningKeyTable(db), Refusing(), await real.signing_key())
    chunks: list[bytes] = []
    with pytest.raises(StorageError):
        async for chunk in export_lines(ExportSource(db), "ndjson", key=await notary.signing_key(),
                                        anchor=notary.record):
            chunks.append(chunk)
    assert b'"manifest"' not in b"".join(chunks)
    assert not verify_export(chunks).ok


async def test_a_later_export_is_checked_against_an_earlier_one(db: Database, pool: AsyncConnectionPool,
                                                                trail: Trail) -> None:
    notary = notary_for(db, Settings())
    key = await notary.signing_key()
    earlier = await _export(db, notary, T0)
    old, _ = read_manifest([earlier], key.public)
    assert old is not None
    async with pool.connection() as conn:  # more usage arrives, after everything exported so far
        await write_usage(conn, [usage_row(trail.revoked + timedelta(days=2), outcome="VALID")])
    extended = await _export(db, notary, T0 + timedelta(hours=1))
    assert verify_export([extended], key.public, since=old).verified
    async with pool.connection() as conn:  # someone with the database's superuser rewrites an exported record
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")  # the append-only triggers off
            await conn.execute("UPDATE usage_events SET outcome = 'FORBIDDEN' WHERE outcome = 'NOT_FOUND'")
    rewritten = await _export(db, notary, T0 + timedelta(hours=2))
    alone = verify_export([rewritten], key.public)
    assert alone.verified  # signed by the genuine key: on its own, nothing shows the rewrite
    since = verify_export([rewritten], key.public, since=old)
    assert not since.ok and any("record seq 8 has digest" in problem for problem in since.problems)
    recorded = manifest_from_anchor((await ExportAnchors(db).recent(3))[-1])  # the earlier head, from the table
    assert recorded == old and not verify_export([rewritten], key.public, since=recorded).ok
