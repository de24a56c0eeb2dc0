"""The ``keyledger`` command as a user runs it: a subprocess with the test's database and NATS."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.support.env import clean_env
from tests.support.server import CHEAP_ARGON2


class Cli:
    """Runs ``python -m keyledger.services.cli`` with the test database and records all output."""

    def __init__(self, database_url: str, nats_url: str) -> None:
        self.env = clean_env({**CHEAP_ARGON2, "DATABASE_URL": database_url, "NATS_URL": nats_url})
        self.output: list[str] = []

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """``keyledger ARGS``; fails the test unless it exits with ``expect``."""
        proc = subprocess.run([sys.executable, "-m", "keyledger.services.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.output += [proc.stdout, proc.stderr]
        assert proc.returncode == expect, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    def json(self, *args: str) -> Any:
        """``keyledger ARGS --json``, decoded."""
        return json.loads(self.run(*args, "--json").stdout)
