"""The test session's private folder (under the system's temp folder): its data, pytest's temporary
files and the servers' logs. Removed after a green run; kept after a red one for a look at the logs,
until later sessions find more than ``KEEP`` such folders of finished sessions."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = "keyledger-tests-"
KEEP = 3  # folders of finished (failed) sessions kept, newest first
OWNER = "owner.pid"
UNCLAIMED_AFTER = 24 * 3600.0  # a folder without an owner this old is from a session that never wrote one


def new_session_dir() -> Path:
    """A fresh folder owned by this process; old folders of finished sessions beyond ``KEEP`` go."""
    prune_finished_sessions()
    path = Path(tempfile.mkdtemp(prefix=PREFIX))
    (path / OWNER).write_text(str(os.getpid()))
    return path


def finish_session(path: Path, passed: bool) -> None:
    """Remove the session's folder if the run passed."""
    if passed:
        shutil.rmtree(path, ignore_errors=True)


def prune_finished_sessions(keep: int = KEEP) -> None:
    """Remove the folders of sessions whose process has ended, except the ``keep`` newest."""
    finished = [path for path in Path(tempfile.gettempdir()).glob(PREFIX + "*") if _finished(path)]
    finished.sort(key=_age)
    for path in finished[keep:]:
        shutil.rmtree(path, ignore_errors=True)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _finished(path: Path) -> bool:
    try:
        pid = int((path / OWNER).read_text())
    except (OSError, ValueError):
        return _age(path) > UNCLAIMED_AFTER  # still being created, or a stray
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
