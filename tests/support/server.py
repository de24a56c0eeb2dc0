"""A real keyledger API process (granian) for end-to-end tests."""

from __future__ import annotations

import itertools
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from keyledger.services.config import Settings
from tests.support.clock import ReferenceClock
from tests.support.env import clean_env
from tests.support.stderr import Stderr
from tests.support.wait import until_sync

CHEAP_ARGON2 = {"KEYLEDGER_ARGON2_TIME_COST": "1", "KEYLEDGER_ARGON2_MEMORY_KIB": "1024"}
PORT_TAKEN = "Address already in use"  # granian's words when the port went to someone else
MAX_LAUNCHES = 3
_numbers = itertools.count(1)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within ``grace`` seconds; nothing if it already exited."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# the worker roles a test server supervises unless the test asks for more: the ones every API needs (events
# reach NATS and the key cache, usage reaches the audit table); the watch and webhooks roles start only for
# the tests about them (each role is a Python process to start and stop: a suite's worth of CPU)
BASE_ROLES = ("relay", "projector", "audit-sink")


class ApiServer:
    """``keyledger serve`` as a subprocess on a free port; reads the bootstrap secret it prints once.

    Its environment is ``clean_env()`` (none of the caller's keyledger settings) with the servers,
    streams and cheap argon2 of the test, a data folder of its own (its spool), the clock of
    ``clock`` (plus ``ahead``) when given, and ``extra_env`` last. If its port is taken between
    choosing it and binding it (other test sessions run beside this one), it starts again on another.
    Its stdout and stderr go to one log file, or its stderr to ``stderr`` (a pipe or a terminal) when given.
    With ``workers`` it supervises ``roles`` (``BASE_ROLES`` unless the test needs watch or webhooks too).
    """

    def __init__(self, database_url: str, nats_url: str, settings: Settings, log_dir: Path,
                 workers: bool = True, extra_env: dict[str, str] | None = None,
                 clock: ReferenceClock | None = None, ahead: timedelta = timedelta(0), processes: int = 1,
                 stderr: Stderr | None = None, roles: Sequence[str] = BASE_ROLES) -> None:
        self.database_url, self.nats_url, self.settings, self.log_dir = database_url, nats_url, settings, log_dir
        self.workers, self.extra_env, self.clock, self.ahead = workers, extra_env or {}, clock, ahead
        self.processes = processes  # API worker processes (`serve --workers N`)
        self.roles = tuple(roles)  # the worker roles it supervises (`serve --roles`), unless ``workers`` is False
        self.stderr = stderr
        self.log_path = log_dir / f"api-{next(_numbers)}.log"
        self._log = self.log_path.open("w")
        self.ready_after: float | None = None
        self.bootstrap_secret: str | None = None
        self.verify_credential: str | None = None  # printed on the first start, like the bootstrap secret
        self.launches = 0
        self._launch()

    def _launch(self) -> None:
        """Start the process on a port that is free now (another process may take it before the bind)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.launched = time.monotonic()
        self.launches += 1
        self._log.write(f"--- launch {self.launches} on port {self.port}\n")
        self._log.flush()
        self._log_offset = self._log.tell()
        self._stderr_offset = len(self.stderr.lines()) if self.stderr is not None else 0
        env = {**self.environment(), "PORT": str(self.port),
               "KEYLEDGER_DATA_DIR": str(self.log_dir / f"api-{self.port}")}
        args = [sys.executable, "-m", "keyledger.services.cli", "serve", "--workers", str(self.processes),
                *(["--roles", ",".join(self.roles)] if self.workers else ["--no-workers"])]
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stdin=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT if self.stderr is None else self.stderr.child_end)

    def environment(self) -> dict[str, str]:
        """What this server runs with but its port and data folder: also what a CLI command beside it needs."""
        return clean_env({
            "DATABASE_URL": self.database_url, "NATS_URL": self.nats_url,
            "KEYLEDGER_NATS_STREAM": self.settings.nats_stream,
            "KEYLEDGER_NATS_SUBJECT_PREFIX": self.settings.nats_subject_prefix,
            "KEYLEDGER_USAGE_STREAM": self.settings.usage_stream,
            "KEYLEDGER_USAGE_SUBJECT": self.settings.usage_subject,
            "KEYLEDGER_REPLICAS_SUBJECT": self.settings.replicas_subject,
            "KEYLEDGER_VERIFY_OPEN": "1",  # tests of other things call verify without a credential; the
            # closed default has its own tests (extra_env={"KEYLEDGER_VERIFY_OPEN": ""})
            **CHEAP_ARGON2, **(self.clock.start_env(self.ahead) if self.clock is not None else {}), **self.extra_env})

    @property
    def startup_seconds(self) -> float:
        """From launch until ready: an upper bound on how far its clock reads behind the reference."""
        assert self.ready_after is not None, "not ready yet"
        return self.ready_after

    def wait_ready(self, timeout: float = 60.0) -> ApiServer:
        """Block until /readyz answers 200; fail with the server's log otherwise."""
        until_sync(self._ready, timeout=timeout, interval=0.1, what=f"the API on port {self.port} to be ready",
                   explain=self.log)
        self.ready_after = time.monotonic() - self.launched
        match = re.search(r"store it now:\n\s+(\S+)", self.log())
        self.bootstrap_secret = match.group(1) if match else None
        match = re.search(r"Verify credential .*\n\s+(\S+)", self.log())
        self.verify_credential = match.group(1) if match else None
        return self

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            self._log.flush()
            printed = self.log_path.read_bytes()[self._log_offset:].decode(errors="replace")
            if self.stderr is not None:
                printed += "\n".join(self.stderr.lines()[self._stderr_offset:])
            lost_port = PORT_TAKEN in printed
            if lost_port and self.launches < MAX_LAUNCHES:
                self._launch()
                return False
            raise AssertionError(f"API exited early with {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        """Everything the process printed so far (all of it once stopped); its own ``stderr``, when it has
        one, after the rest."""
        if not self._log.closed:
            self._log.flush()
        printed = self.log_path.read_text(errors="replace")
        return printed if self.stderr is None else f"{printed}\n--- stderr\n{self.stderr.text()}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop. Stopping twice is harmless."""
        stop_process(self.process, grace=15)
        self._log.close()
        if self.stderr is not None:
            self.stderr.close()


StartServer = Callable[..., ApiServer]
"""What the e2e ``start_server`` and ``replica`` fixtures give: start one more server, ready."""
