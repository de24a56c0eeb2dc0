"""The scanner: keyledger tokens and verify credentials in files and in a git repository's history.

Files are walked (``.git`` folders and binary files skipped); ``git`` history is read as the lines each commit
added (``git log --all -p``), so a token committed once and deleted since is still found, at the commit that
added it. Only checksum-valid tokens are findings (:mod:`keyledger.domain.leaks`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from keyledger.domain.leaks import FoundToken, Kind, find_tokens

MAX_FILE_BYTES = 16 * 1024 * 1024  # a bigger file is skipped (and said so)
_BINARY_PROBE = 8192
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """A token found in a file (``commit`` None) or in the lines a commit added. ``token`` is the whole secret,
    for ``--report`` only: repr and str hide it, and nothing prints it."""

    path: str
    line: int
    commit: str | None = None
    kind: Kind
    key_id: str
    start: str
    token: str

    def location(self) -> str:
        """``path:line``, or ``commit:path:line`` for one found in the history."""
        return f"{self.commit[:12] + ':' if self.commit else ''}{self.path}:{self.line}"

    def describe(self) -> str:
        """``location: <start>… (key <id>, checksum valid)``: never the whole secret."""
        what = "verify credential" if self.kind == "verify_credential" else "key"
        return f"{self.location()}: {self.start}… ({what} {self.key_id}, checksum valid)"

    def public(self) -> dict[str, object]:
        """What ``--json`` prints of it (no secret)."""
        return {"path": self.path, "line": self.line, "commit": self.commit, "kind": self.kind,
                "key_id": self.key_id, "start": self.start, "checksum_valid": True}

    def __repr__(self) -> str:
        return f"Finding({self.location()!r}, start={self.start!r}, token='***')"

    __str__ = __repr__


def _finding(found: FoundToken, path: str, line: int, commit: str | None = None) -> Finding:
    return Finding(path=path, line=line, commit=commit, kind=found.kind, key_id=found.key_id, start=found.start,
                   token=found.token)


def files_under(paths: Iterable[str]) -> Iterator[Path]:
    """Every file named or under a folder named in ``paths``, skipping ``.git`` folders, in a stable order."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d != ".git")
                yield from (Path(root) / f for f in sorted(files))
        elif path.is_file():
            yield path


def scan_file(path: Path, prefixes: tuple[str, ...], skipped: list[str] | None = None) -> list[Finding]:
    """The tokens in one file; a binary, unreadable or huge file has none (its name goes to ``skipped``)."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise OSError("larger than 16 MiB")
        data = path.read_bytes()
    except OSError as exc:
        if skipped is not None:
            skipped.append(f"{path}: {exc.strerror or exc}")
        return []
    if b"\0" in data[:_BINARY_PROBE]:
        return []
    text = data.decode("utf-8", "replace")
    return [_finding(found, str(path), found.line) for found in find_tokens(text, prefixes)]


def git_root(path: str) -> str | None:
    """The top folder of the git work tree holding ``path``, or None."""
    folder = path if os.path.isdir(path) else os.path.dirname(path) or "."
    done = subprocess.run(["git", "-C", folder, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def scan_history(root: str, prefixes: tuple[str, ...]) -> Iterator[Finding]:
    """The tokens in the lines every commit of every branch and tag of the repository at ``root`` added."""
    command = ["git", "-C", root, "-c", "core.quotePath=false", "log", "--all", "-p", "-U0", "--no-color",
               "--no-ext-diff", "--no-renames", "--format=%x00commit %H"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as git:
        assert git.stdout is not None
        commit, path, line = "", "", 0
        for raw in git.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            if text.startswith("\0commit "):
                commit, path = text[len("\0commit "):], ""
            elif text.startswith("+++ "):
                path = text[4:].strip('"').removeprefix("b/") if text[4:] != "/dev/null" else ""
            elif (hunk := _HUNK.match(text)) is not None:
                line = int(hunk[1])
            elif text.startswith("+") and path:
                for found in find_tokens(text[1:], prefixes):
                    yield _finding(found, path, line, commit)
                line += 1


def scan(paths: Iterable[str], prefixes: tuple[str, ...], history: bool = False,
         skipped: list[str] | None = None) -> list[Finding]:
    """Every token in the files under ``paths`` and, with ``history``, in the history of each git repository
    they are in (once per repository)."""
    paths = list(paths)
    findings = [finding for path in files_under(paths) for finding in scan_file(path, prefixes, skipped)]
    if history:
        for root in dict.fromkeys(root for path in paths if (root := git_root(path)) is not None):
            findings.extend(scan_history(root, prefixes))
    return findings
