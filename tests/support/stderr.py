"""A child process's stderr on a pipe or a terminal (a pseudo-terminal), read line by line as it is written."""

from __future__ import annotations

import os
import threading


class Stderr:
    """Give :attr:`child_end` to a child as its stderr (and to its children, who inherit it); :meth:`lines`
    are what they wrote so far. ``terminal``: a pseudo-terminal, so ``isatty()`` is true in the child;
    otherwise a pipe."""

    def __init__(self, terminal: bool = False) -> None:
        self.terminal = terminal
        self._read, self.child_end = os.openpty() if terminal else os.pipe()
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._drain, name="stderr-reader", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read, 65536)
            except OSError:  # a terminal whose every writer is gone (EIO)
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            with self._lock:
                self._lines += [line.decode(errors="replace").removesuffix("\r") for line in complete]
        if pending:
            with self._lock:
                self._lines.append(pending.decode(errors="replace").removesuffix("\r"))

    def lines(self) -> list[str]:
        """Every complete line written so far (a terminal's CR LF read as one line end)."""
        with self._lock:
            return list(self._lines)

    def text(self) -> str:
        """The lines so far, joined (for a failure message)."""
        return "\n".join(self.lines())

    def close(self, timeout: float = 10.0) -> None:
        """Once the children are gone: read what is left and close both ends. Closing twice is harmless."""
        if self.child_end >= 0:
            os.close(self.child_end)
            self.child_end = -1
            self._reader.join(timeout)
            os.close(self._read)
