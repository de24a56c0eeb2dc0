"""A real keyledger API process (granian) for end-to-end tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from keyledger.services.config import Settings


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    """``keyledger serve`` as a subprocess on a free port; reads the bootstrap secret it prints once."""

    def __init__(self, database_url: str, nats_url: str, settings: Settings, log_dir: Path,
                 workers: bool = True, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"api-{self.port}.log"
        env = {**os.environ, "DATABASE_URL": database_url, "NATS_URL": nats_url, "PORT": str(self.port),
               "KEYLEDGER_NATS_STREAM": settings.nats_stream,
               "KEYLEDGER_NATS_SUBJECT_PREFIX": settings.nats_subject_prefix,
               "KEYLEDGER_USAGE_STREAM": settings.usage_stream, "KEYLEDGER_USAGE_SUBJECT": settings.usage_subject,
               "KEYLEDGER_ARGON2_TIME_COST": "1", "KEYLEDGER_ARGON2_MEMORY_KIB": "1024", **(extra_env or {})}
        args = [sys.executable, "-m", "keyledger.services.cli", "serve", *([] if workers else ["--no-workers"])]
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        self.bootstrap_secret: str | None = None

    def wait_ready(self, timeout: float = 30.0) -> "ApiServer":
        """Block until /readyz answers 200; fail with the server's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"API exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    match = re.search(r"store it now:\n\s+(\S+)", self.log())
                    self.bootstrap_secret = match.group(1) if match else None
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"API not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """Everything the process printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
