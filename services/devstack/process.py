"""Process and port helpers shared by the embedded servers."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]

children: dict[int, subprocess.Popen[bytes]] = {}  # servers this process spawned, reaped on stop


class StackError(Exception):
    """The embedded stack could not be started or stopped (one-line human message)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: Any, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, TypeError, ValueError):
        return False


def alive(pid: Any, name: str, marker: Path) -> bool:
    """True if `pid` is a live (non-zombie) `name` process whose command line mentions `marker`."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid in children and children[pid].poll() is not None:  # our own child: reap it
        del children[pid]
        return False
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE and name in proc.name()
                    and f" {marker} " in f" {' '.join(proc.cmdline())} ")  # a whole argument: nats ≠ nats-2
    except psutil.Error:
        return False


def log_since(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - 16384))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def tail(path: Path, offset: int) -> str:
    """The last lines logged to `path` after `offset`, as one line."""
    lines = log_since(path, offset).strip().splitlines()[-8:]
    return " | ".join(line.strip() for line in lines) or f"(nothing in {path})"


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def read_int(path: Path, line: int = 0) -> int | None:
    try:
        return int(path.read_text().splitlines()[line])
    except (OSError, ValueError, IndexError):
        return None
