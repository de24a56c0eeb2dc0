"""The suite ignores the caller's environment: run in a shell whose keyledger settings would each
break it (a verify token, a rate limit of 1, another token prefix, unreachable servers, a bad test
clock, the user's data folder), an end-to-end test and the environment checks still pass, and the
user's data folder stays untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

POLLUTED = {
    "KEYLEDGER_VERIFY_TOKEN": "x", "KEYLEDGER_RATE_STANDARD": "1", "KEYLEDGER_TOKEN_PREFIX": "zz",
    "KEYLEDGER_TEST_CLOCK_START": "not a time", "KEYLEDGER_ARGON2_MEMORY_KIB": "lots",
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "NATS_URL": "nats://127.0.0.1:1",
    "PORT": "1", "HOST": "203.0.113.1",
}
PROBES = ["tests/unit/test_environment.py",
          "tests/e2e/test_api_keys_document.py::test_revoke_is_immediate_and_cannot_be_undone"]


def test_a_shell_full_of_keyledger_settings_changes_nothing(servers: tuple[str, str], tmp_path: Path) -> None:
    users_data = tmp_path / "users-own-keyledger"
    users_data.mkdir()
    env = {**os.environ, **POLLUTED, "KEYLEDGER_DATA_DIR": str(users_data),
           "TEST_DATABASE_URL": servers[0], "TEST_NATS_URL": servers[1]}  # the suite's own: reuse our servers
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PROBES], cwd=REPO_ROOT,
                         env=env, capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert "4 passed" in run.stdout  # the three environment checks and the e2e test
    assert list(users_data.iterdir()) == []
