"""The embedded stack's credentials: made on first start, kept private, and each role allowed only its part.

Postgres asks for a password over TCP, and keyledger's processes log in as an application role that can
append and read but cannot alter the audit trail; NATS asks for a user, and only the relay may publish
key events.
"""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import nats
import nats.errors
import psycopg
import pytest
from nats.aio.client import Client
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from keyledger.services.config import nats_inbox_prefix
from keyledger.services.devstack.stack import StackInfo, stack_down, stack_up
from keyledger.services.messaging.streams import ensure_usage_stream, last_sequence
from keyledger.services.storage.database import open_database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.migrations import migrate
from tests.support.factories import created
from tests.support.pipeline import isolated_settings, jetstream


@pytest.fixture
def stack(stack_info: StackInfo | None) -> StackInfo:
    if stack_info is None:
        pytest.skip("the suite runs on external servers (TEST_DATABASE_URL/TEST_NATS_URL), not the embedded stack")
    return stack_info


def test_credentials_are_private_files(stack: StackInfo) -> None:
    for name in ("credentials.json", "nats.conf"):
        assert stat.S_IMODE((stack.data_dir / name).stat().st_mode) == 0o600, name
    passwords = json.loads((stack.data_dir / "credentials.json").read_text())
    state = (stack.data_dir / "stack.json").read_text()
    assert passwords["postgres"]["app"] not in state and passwords["nats"]["relay"] not in state


def test_postgres_asks_for_a_password(stack: StackInfo) -> None:
    url = conninfo_to_dict(stack.database_url)
    for password in (None, "not-the-password"):
        given = {**url, "password": password} if password else {k: v for k, v in url.items() if k != "password"}
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(make_conninfo("", **given), connect_timeout=5).close()


REFUSED = {
    "disable a trigger": "ALTER TABLE events DISABLE TRIGGER events_append_only",
    "replica mode skips triggers": "SET session_replication_role = replica",
    "detach a partition": "ALTER TABLE usage_events DETACH PARTITION usage_events_20300101",
    "drop a partition": "DROP TABLE usage_events_20300101",
    "change an event": "UPDATE events SET type = 'KeyRevoked'",
    "remove an event": "DELETE FROM events",
    "truncate events": "TRUNCATE events",
    "backdate an event": "INSERT INTO events (global_position, event_id, stream_id, version, type, data, recorded_at)"
                         " VALUES (999, gen_random_uuid(), 'k', 9, 'KeyRenamed', '{}', '2000-01-01')",
    "remove usage": "DELETE FROM usage_events",
    "drop the partition function": "DROP FUNCTION keyledger_ensure_usage_partition(date)",
    "create a table": "CREATE TABLE mine (v text)",
    "rewrite a credential": "UPDATE verify_credentials SET secret_sha256 = 'x'",
}


@pytest.mark.parametrize("attempt", sorted(REFUSED))
async def test_application_role_cannot_alter_the_audit_trail(stack: StackInfo, database_url: str,
                                                             attempt: str) -> None:
    await migrate(database_url)  # as the owner, like `keyledger serve` does
    app_url = make_conninfo(stack.database_url, dbname=conninfo_to_dict(database_url)["dbname"])
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("SELECT keyledger_ensure_usage_partition(%s)", (date(2030, 1, 1),))  # what the sink may do
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(REFUSED[attempt])
    with psycopg.connect(database_url) as owner:  # and the partition is still there
        assert owner.execute("SELECT to_regclass('usage_events_20300101') IS NOT NULL").fetchone() == (True,)


async def test_application_role_appends_and_reads_events(stack: StackInfo, database_url: str) -> None:
    await migrate(database_url)
    app_url = make_conninfo(stack.database_url, dbname=conninfo_to_dict(database_url)["dbname"])
    async with open_database(app_url) as db:
        store = PostgresEventStore(db)
        key_id = uuid.uuid4().hex[:12]
        appended = await store.append(key_id, 0, [created(key_id)])
        assert [e.event_id for e in await store.read_stream(key_id)] == [e.event_id for e in appended]


@pytest.fixture
async def connect_as(stack: StackInfo) -> AsyncIterator[dict[str, Client]]:
    clients: dict[str, Client] = {}

    async def noisy(exc: Exception) -> None:  # permission violations arrive here; the tests check effects
        pass

    for role, url in stack.nats_role_urls.items():
        clients[role] = await nats.connect(url, error_cb=noisy, allow_reconnect=False,
                                           inbox_prefix=nats_inbox_prefix(role))  # the only inbox it may read
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.close()


async def test_nats_asks_for_a_user(stack: StackInfo) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(f"nats://127.0.0.1:{stack.nats_port}", allow_reconnect=False, max_reconnect_attempts=0,
                           connect_timeout=2)


async def test_only_the_relay_publishes_key_events(stack: StackInfo, connect_as: dict[str, Client]) -> None:
    settings = isolated_settings()
    subject = f"{settings.nats_subject_prefix}.somekey"
    async with jetstream(stack.nats_url, settings) as (bus, _js):
        for role in ("api", "projector", "sink"):
            with pytest.raises((nats.errors.Error, TimeoutError)):
                await connect_as[role].jetstream().publish(subject, b"{}", timeout=1)
        assert await last_sequence(bus, settings.nats_stream) == 0
        await connect_as["relay"].jetstream().publish(subject, b"{}", timeout=5)
        assert await last_sequence(bus, settings.nats_stream) == 1
        with pytest.raises((nats.errors.Error, TimeoutError)):  # nor may anyone but the operator remove them
            await connect_as["api"].jetstream().purge_stream(settings.nats_stream)
        assert await last_sequence(bus, settings.nats_stream) == 1


async def test_api_processes_publish_usage_and_the_sink_does_not(stack: StackInfo,
                                                                 connect_as: dict[str, Client]) -> None:
    settings = isolated_settings()
    async with jetstream(stack.nats_url, settings) as (bus, js):
        await ensure_usage_stream(bus, settings)
        try:
            await connect_as["api"].jetstream().publish(settings.usage_subject, b"[]", timeout=5)
            for role in ("sink", "relay"):
                with pytest.raises((nats.errors.Error, TimeoutError)):
                    await connect_as[role].jetstream().publish(settings.usage_subject, b"[]", timeout=1)
            assert await last_sequence(bus, settings.usage_stream) == 1
        finally:
            await js.delete_stream(settings.usage_stream)


def test_a_stack_made_before_credentials_gets_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "old"
    first = stack_up(data_dir, pg_settings={"fsync": "off"})
    try:
        state = json.loads((data_dir / "stack.json").read_text())
        del state["credentials"]  # as a stack written before credentials existed,
        (data_dir / "stack.json").write_text(json.dumps(state))
        (data_dir / "pg" / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")  # which trusted TCP
        again = stack_up(data_dir, pg_settings={"fsync": "off"})
        assert json.loads((data_dir / "stack.json").read_text())["pg_pid"] != state["pg_pid"]  # restarted
        assert conninfo_to_dict(again.database_url)["password"] == conninfo_to_dict(first.database_url)["password"]
        with psycopg.connect(again.database_url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("keyledger",)
        no_password = {k: v for k, v in conninfo_to_dict(again.database_url).items() if k != "password"}
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(make_conninfo("", **no_password), connect_timeout=5).close()
    finally:
        stack_down(data_dir)
