"""Integration tests for services.devstack: real postgres and nats-server processes, one data dir per test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import psycopg
import pytest

from keyledger.services.bootstrap.runtime import Endpoints, server_endpoints
from keyledger.services.config import Settings
from keyledger.services.devstack import postgres, process, stack
from keyledger.services.devstack.stack import (
    StackInfo,
    stack_down,
    stack_status,
    stack_up,
)
from tests.support.paths import REPO_ROOT as ROOT
from tests.support.wait import until_sync

FAST_PG = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def pids(data_dir: Path) -> tuple[int, int]:
    state = json.loads((data_dir / "stack.json").read_text())
    return state["pg_pid"], state["nats_pid"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "stack"
    try:
        yield path
    finally:
        stack_down(path)


async def test_up_serves_postgres_and_jetstream(data_dir: Path) -> None:
    info = stack_up(data_dir, pg_settings=FAST_PG)
    assert info.data_dir == data_dir.resolve()
    assert info.database_url.startswith("postgresql://keyledger:")
    assert info.database_url.endswith(f"@127.0.0.1:{info.pg_port}/postgres")
    assert info.admin_database_url.startswith("postgresql://postgres:")
    assert info.nats_url.startswith("nats://operator:") and info.nats_url.endswith(f"@127.0.0.1:{info.nats_port}")
    assert answers(info.pg_port) and answers(info.nats_port)
    for name in ("pg", "nats", "pg.log", "nats.log", "stack.json", "credentials.json", "nats.conf"):
        assert (data_dir / name).exists(), name
    with psycopg.connect(info.admin_database_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert conn.execute("show max_connections").fetchone() == ("200",)
        assert conn.execute("show fsync").fetchone() == ("off",)
        assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)
    nc = await nats.connect(info.nats_url)
    try:
        account = await nc.jetstream().account_info()
        assert account.limits is not None
    finally:
        await nc.close()


def test_up_twice_reuses_and_status_tracks_state(data_dir: Path) -> None:
    assert stack_status(data_dir) is None
    first = stack_up(data_dir, pg_settings=FAST_PG)
    first_pids = pids(data_dir)
    assert stack_up(data_dir, pg_settings=FAST_PG) == first
    assert pids(data_dir) == first_pids
    assert stack_status(data_dir) == first
    assert stack_down(data_dir) is True
    assert stack_status(data_dir) is None
    assert not answers(first.pg_port) and not answers(first.nats_port)
    assert not (data_dir / "stack.json").exists()
    assert not postgres.socket_dir(data_dir.resolve()).exists()
    assert stack_down(data_dir) is False  # safe when nothing runs
    assert stack_down(data_dir / "never-created") is False


async def test_data_survives_down_and_up(data_dir: Path) -> None:
    info = stack_up(data_dir, pg_settings=FAST_PG)
    with psycopg.connect(info.admin_database_url, autocommit=True) as conn:
        conn.execute("create table kept (v text)")
        conn.execute("insert into kept values ('hello')")
    nc = await nats.connect(info.nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        await js.publish("kept.one", b"x")
    finally:
        await nc.close()
    assert stack_down(data_dir) is True

    again = stack_up(data_dir, pg_settings=FAST_PG)
    with psycopg.connect(again.admin_database_url) as conn:
        assert conn.execute("select v from kept").fetchall() == [("hello",)]
    nc = await nats.connect(again.nats_url)
    try:
        assert (await nc.jetstream().stream_info("KEPT")).state.messages == 1
    finally:
        await nc.close()


def test_stack_outlives_the_process_that_started_it(data_dir: Path) -> None:
    code = ("import sys; from pathlib import Path; from keyledger.services.devstack.stack import stack_up; "
            "print(stack_up(Path(sys.argv[1]), pg_settings={'fsync': 'off'}).pg_port)")
    out = subprocess.run([sys.executable, "-c", code, str(data_dir)], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    info = stack_status(data_dir)
    assert info is not None and info.pg_port == int(out)
    started = pids(data_dir)
    assert stack_up(data_dir) == info and pids(data_dir) == started  # adopted, nothing new started
    with psycopg.connect(info.admin_database_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    assert stack_down(data_dir) is True
    assert not answers(info.pg_port) and not answers(info.nats_port)


def test_crashed_stack_is_restarted(data_dir: Path) -> None:
    info = stack_up(data_dir, pg_settings=FAST_PG)
    pg_pid, nats_pid = pids(data_dir)
    os.kill(pg_pid, signal.SIGKILL)
    os.kill(nats_pid, signal.SIGKILL)
    until_sync(lambda: not answers(info.pg_port) and not answers(info.nats_port), timeout=15, interval=0.05,
               what="the killed servers' ports to close")
    assert stack_status(data_dir) is None  # stale stack.json, postmaster.pid and nats.pid left behind
    again = stack_up(data_dir, pg_settings=FAST_PG)
    assert pids(data_dir) != (pg_pid, nats_pid)
    assert stack_status(data_dir) == again
    with psycopg.connect(again.admin_database_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_retries_when_a_port_gets_taken(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = process.free_port
        calls: list[int] = []

        def flaky_free_port() -> int:  # every other call hands out the occupied port
            calls.append(1)
            return taken if len(calls) % 2 else real_free_port()

        monkeypatch.setattr(process, "free_port", flaky_free_port)
        info = stack_up(data_dir, pg_settings=FAST_PG)
    assert len(calls) == 4  # postgres and nats each retried once
    assert taken not in (info.pg_port, info.nats_port)
    assert stack_status(data_dir) == info


def test_bad_setting_raises_stack_error_with_log_tail(data_dir: Path) -> None:
    with pytest.raises(stack.StackError, match="postgres failed to start.*no_such_setting"):
        stack_up(data_dir, pg_settings={"no_such_setting": "1"})
    assert stack_status(data_dir) is None


def test_server_endpoints_prefer_configured_urls(tmp_path: Path) -> None:
    data_dir = tmp_path / "resolved"
    given = Settings(database_url="postgresql://db.example/x", nats_url="nats://mq.example:4222",
                     data_dir=str(data_dir))
    endpoints = server_endpoints(given)
    assert (endpoints.database_url, endpoints.admin_database_url, endpoints.nats_url_for("relay")) == (
        given.database_url, given.database_url, given.nats_url)
    assert not data_dir.exists()  # nothing was started

    try:
        endpoints = server_endpoints(Settings(database_url="postgresql://db.example/x", data_dir=str(data_dir)))
        info = stack_status(data_dir)
        assert info is not None
        assert (endpoints.database_url, endpoints.nats_url) == ("postgresql://db.example/x", info.nats_url)
        assert endpoints.nats_url_for("sink") == info.nats_role_urls["sink"]
        assert server_endpoints(Settings(data_dir=str(data_dir))) == Endpoints(
            database_url=info.database_url, admin_database_url=info.admin_database_url, nats_url=info.nats_url,
            nats_role_urls=info.nats_role_urls)
    finally:
        stack_down(data_dir)


def test_stack_info_names_its_data_folder_as_a_path(tmp_path: Path) -> None:
    # which folder is the settings' (KEYLEDGER_DATA_DIR): tests/unit/services/test_data_dir.py
    assert isinstance(StackInfo(tmp_path, 1, 2, "a", "b", "c", {}).data_dir, Path)
