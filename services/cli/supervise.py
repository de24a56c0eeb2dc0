"""Background work in processes of its own: the relay, the projector and the audit sink each run as a
``keyledger <role>`` child, restarted on its own when it exits, stopped (SIGTERM, then SIGKILL) with
their parent. ``keyledger run`` supervises them; so does ``keyledger serve`` beside its API workers,
whose event loops then do only HTTP, the live cache and usage batching.

A child also stops by itself when its parent is gone (``KEYLEDGER_PARENT_PID``; see
:func:`keyledger.services.parent.watch_parent`), so a parent killed with SIGKILL leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keyledger.services.bootstrap.roles import ROLES as WORKER_ROLES
from keyledger.services.parent import PARENT_ENV
from keyledger.services.signals import SignalPipe

log = logging.getLogger("keyledger.supervise")

ROLES = tuple(WORKER_ROLES)  # relay, projector, audit-sink, watch, webhooks: the commands
STOP_SECONDS = 5.0  # SIGTERM, then SIGKILL after this long (each role stops in well under a second)
_FIRST_BACKOFF, _MAX_BACKOFF, _HEALTHY_AFTER = 0.5, 15.0, 30.0


@dataclass
class _Child:
    role: str
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = _FIRST_BACKOFF
    restart_at: float | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """Runs one ``keyledger <role>`` process per role and restarts any that exits, until stopped."""

    def __init__(self, roles: Sequence[str] = ROLES, env: Mapping[str, str] | None = None,
                 poll_interval: float = 0.1) -> None:
        self._children = {role: _Child(role) for role in roles}
        self._env = {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}
        self._poll, self._stopping = poll_interval, threading.Event()
        self._thread: threading.Thread | None = None
        self._lock, self._stop_lock = threading.Lock(), threading.Lock()
        self._stopped = False

    def start(self) -> Supervisor:
        """Start every child, and a thread that restarts those that exit."""
        with self._lock:
            for child in self._children.values():
                self._spawn(child)
        self._thread = threading.Thread(target=self._watch, name="keyledger-supervisor", daemon=True)
        self._thread.start()
        return self

    def pids(self) -> dict[str, int]:
        """The running children's pids, by role."""
        with self._lock:
            return {role: c.process.pid for role, c in self._children.items()
                    if c.process is not None and c.process.poll() is None}

    def restarts(self) -> dict[str, int]:
        """How often each role was restarted."""
        with self._lock:
            return {role: c.restarts for role, c in self._children.items()}

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM every child, SIGKILL those still running after ``timeout``; waits for all. Safe to call
        from several threads: the first does the work, the others wait for it."""
        with self._stop_lock:
            if not self._stopped:
                self._stop(timeout)
                self._stopped = True

    def _stop(self, timeout: float) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            running = [c.process for c in self._children.values() if c.process is not None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop within %.0fs; killing it", process.pid, timeout)
                process.kill()
                process.wait()

    def _spawn(self, child: _Child) -> None:
        command = [sys.executable, "-m", "keyledger.services.cli", child.role]
        child.process = subprocess.Popen(command, env=self._env, stdin=subprocess.DEVNULL)
        child.started, child.restart_at = time.monotonic(), None

    def _watch(self) -> None:
        while not self._stopping.wait(self._poll):
            now = time.monotonic()
            with self._lock:
                for child in self._children.values():
                    self._tend(child, now)

    def _tend(self, child: _Child, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
            return
        code = child.process.poll() if child.process is not None else 0
        if code is None:
            if now - child.started > _HEALTHY_AFTER:
                child.backoff = _FIRST_BACKOFF  # it ran a while: the next exit restarts quickly again
            return
        child.exits.append(code)
        log.warning("%s exited with %s; restarting in %.1fs", child.role, code, child.backoff)
        child.restart_at = now + child.backoff
        child.backoff = min(child.backoff * 2, _MAX_BACKOFF)


def run_supervised(roles: Sequence[str] = ROLES) -> int:
    """``keyledger run``: supervise one process per role until SIGINT or SIGTERM (the handlers only write to
    a pipe this thread reads: :mod:`keyledger.services.signals`)."""
    signals = SignalPipe().install()
    supervisor = Supervisor(roles).start()
    log.info("keyledger %s running as processes %s; Ctrl-C stops", " + ".join(roles), supervisor.pids())
    try:
        while not signals.wait():
            pass
    finally:
        supervisor.stop()
    return 0
