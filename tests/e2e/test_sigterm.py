"""Every keyledger process stops within seconds of SIGTERM, whenever it comes: ``keyledger serve`` (its API
worker and its supervised relay, projector and audit sink with it), ``keyledger run`` and each worker role
alone, signalled right after they were started, at several moments of their start-up, once serving, and
while requests are being answered.

A process "stopped" once neither it nor anything it started runs any more: every process whose environment
names the server's own data folder (children inherit it; an orphan keeps it) is looked for, not only the
children the parent still knows of.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from keyledger.services.bootstrap.runtime import Endpoints
from tests.support.clock import ReferenceClock
from tests.support.env import DATA_DIR, clean_env
from tests.support.pipeline import isolated_settings
from tests.support.server import CHEAP_ARGON2, ApiServer
from tests.support.wait import until_sync

STOP_DEADLINE = 10.0  # seconds from SIGTERM until the whole process tree is gone
BANNER = "keyledger API on"  # serve printed it: prepared, the supervised roles start, granian comes next
WORKER_SPAWNED = "Spawning worker"  # granian's line once the API worker process exists (it then loads the app)


def tree(data_dir: str) -> list[psutil.Process]:
    """The live processes whose environment names ``data_dir`` as their keyledger data folder."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get(DATA_DIR) == data_dir:
                found.append(process)
        except psutil.Error:
            continue
    return found


def describe(processes: list[psutil.Process]) -> str:
    """One line per process: its pid, state and command line."""
    lines = []
    for process in processes:
        try:
            lines.append(f"pid {process.pid} ({process.status()}): {' '.join(process.cmdline())}")
        except psutil.Error:
            continue
    return "\n".join(lines) or "(none)"


def sigterm_and_wait(process: subprocess.Popen[bytes], data_dir: str, log: Callable[[], str]) -> None:
    """SIGTERM ``process``; fail unless it and everything it started are gone within ``STOP_DEADLINE``.
    Whatever still runs after the deadline is SIGKILLed, so a failure leaves nothing behind."""
    process.send_signal(signal.SIGTERM)
    try:
        until_sync(lambda: process.poll() is not None and not tree(data_dir), timeout=STOP_DEADLINE, interval=0.05,
                   what=f"pid {process.pid} and every process it started to exit after SIGTERM",
                   explain=lambda: f"still running:\n{describe(tree(data_dir))}\n--- log:\n{log()[-6000:]}")
    finally:
        for leftover in tree(data_dir):
            leftover.kill()
        if process.poll() is None:
            process.kill()
            process.wait()


class Serve:
    """``keyledger serve`` on this test's database and NATS, started but not waited for."""

    def __init__(self, database_url: str, nats_url: str, endpoints: Endpoints, tmp_path: Path,
                 clock: ReferenceClock, processes: int = 1) -> None:
        self.server = ApiServer(database_url, nats_url, isolated_settings(), tmp_path,
                                extra_env=endpoints.environment(), clock=clock, processes=processes)

    @property
    def data_dir(self) -> str:
        """The folder that marks this server's processes."""
        return str(self.server.log_dir / f"api-{self.server.port}")

    def wait_for_line(self, text: str) -> None:
        """Until the server printed ``text`` (fails if it exited first)."""
        until_sync(lambda: self._alive() and text in self.server.log(), timeout=60, what=f"the line {text!r}",
                   explain=self.server.log)

    def wait_after_spawn(self, seconds: float) -> None:
        """Until ``seconds`` after the process was started: a moment of its start-up to signal it at."""
        time.sleep(max(0.0, self.server.launched + seconds - time.monotonic()))

    def _alive(self) -> bool:
        if self.server.process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{self.server.log()}")
        return True

    def stop(self) -> None:
        """SIGTERM it; fail unless the whole tree is gone within the deadline."""
        sigterm_and_wait(self.server.process, self.data_dir, self.server.log)
        self.server.stop()


@pytest.fixture
def serve(database_url: str, nats_url: str, endpoints: Endpoints, tmp_path: Path,
          clock: ReferenceClock) -> Iterator[Callable[..., Serve]]:
    """Start ``keyledger serve`` (not waiting for it); every one started is SIGKILLed with its tree after the
    test, in case the test failed before stopping it."""
    started: list[Serve] = []

    def start(processes: int = 1) -> Serve:
        started.append(Serve(database_url, nats_url, endpoints, tmp_path, clock, processes))
        return started[-1]

    yield start
    for one in started:
        for leftover in tree(one.data_dir):
            leftover.kill()
        one.server.stop()


# moments of start-up: seconds after spawn (imports, settings, migrations, bootstrap, the supervisor, granian),
# and seconds after granian spawned the API worker (it imports and builds the app, then runs its start-up)
AFTER_SPAWN = [0.0, 0.5, 1.0]
AFTER_WORKER = [(1, seconds) for seconds in (0.0, 0.1, 0.25, 0.5, 0.8, 1.2, 2.0)] + [  # (API workers, seconds)
    (2, seconds) for seconds in (0.1, 0.5, 1.2)]  # spawned, not forked: fewer moments differ


@pytest.mark.parametrize("seconds", AFTER_SPAWN)
def test_serve_stops_when_signalled_early_in_its_start(serve: Callable[..., Serve], seconds: float) -> None:
    server = serve()
    server.wait_after_spawn(seconds)
    server.stop()


def test_serve_stops_when_signalled_once_it_prepared(serve: Callable[..., Serve]) -> None:
    server = serve()
    server.wait_for_line(BANNER)
    server.stop()


@pytest.mark.parametrize(("processes", "seconds"), AFTER_WORKER)
def test_serve_stops_when_signalled_while_its_api_workers_start(serve: Callable[..., Serve], processes: int,
                                                                seconds: float) -> None:
    """A forked API worker loads the app before it handles signals: a SIGTERM then went unnoticed (it served
    on, and serve waited for it forever)."""
    server = serve(processes)
    server.wait_for_line(WORKER_SPAWNED)
    time.sleep(seconds)  # a moment of the worker's start-up
    server.stop()


def test_serve_stops_when_signalled_while_serving(serve: Callable[..., Serve]) -> None:
    server = serve()
    server.server.wait_ready()
    server.stop()


def test_serve_stops_when_signalled_while_answering_requests(serve: Callable[..., Serve]) -> None:
    server = serve()
    server.server.wait_ready()
    admin = server.server.bootstrap_secret
    assert admin is not None
    answered = [0]
    done = threading.Event()

    def load() -> None:  # creations (argon2), listings and verifies, until the server is gone
        with httpx.Client(base_url=server.server.url, timeout=5) as client:
            while not done.is_set():
                try:
                    client.post("/v1/keys", json={"name": "load"}, headers={"x-api-key": admin})
                    client.get("/v1/keys", headers={"x-api-key": admin})
                    client.post("/v1/verify", json={"key": admin, "scope": "admin:apikeys"})
                    answered[0] += 1
                except httpx.HTTPError:
                    pass

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    until_sync(lambda: answered[0] >= 8, timeout=30, what="requests to be answered")
    try:
        server.stop()
    finally:
        done.set()
        for thread in threads:
            thread.join(10)


def _role_env(endpoints: Endpoints, data_dir: Path) -> dict[str, str]:
    settings = isolated_settings()
    return clean_env({**endpoints.environment(), **CHEAP_ARGON2, DATA_DIR: str(data_dir),
                      "KEYLEDGER_NATS_STREAM": settings.nats_stream,
                      "KEYLEDGER_NATS_SUBJECT_PREFIX": settings.nats_subject_prefix,
                      "KEYLEDGER_USAGE_STREAM": settings.usage_stream,
                      "KEYLEDGER_USAGE_SUBJECT": settings.usage_subject,
                      "KEYLEDGER_REPLICAS_SUBJECT": settings.replicas_subject})


@pytest.mark.parametrize("command", ["run", "relay", "projector", "audit-sink"])
@pytest.mark.parametrize("running", [False, True], ids=["starting", "running"])
def test_workers_stop_when_signalled(endpoints: Endpoints, tmp_path: Path, command: str, running: bool) -> None:
    """``keyledger run`` (the three roles under one supervisor) and each role alone."""
    data_dir = tmp_path / command
    log_path = tmp_path / f"{command}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "keyledger.services.cli", command],
                                   env=_role_env(endpoints, data_dir), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)

        def read() -> str:
            log.flush()
            return log_path.read_text(errors="replace")

        if running:
            until_sync(lambda: process.poll() is None and "running" in read(), timeout=60,
                       what=f"keyledger {command} to run", explain=read)
            if command == "run":  # and the three roles it supervises
                until_sync(lambda: read().count("running (") >= 3, timeout=60, what="the three roles to run",
                           explain=read)
        sigterm_and_wait(process, str(data_dir), read)
