"""Signals noted without taking a lock, for the processes whose main thread blocks outside an event loop
(``keyledger serve``'s granian main process, ``keyledger run``'s supervisor).

A Python signal handler runs in the main thread between two bytecodes, wherever that thread is: also
inside ``threading.Event.wait()`` at a moment it holds the Event's lock. A handler that then calls
``Event.set()`` (or takes any other lock its thread may hold) waits for itself, forever: the process
ignores every later SIGTERM. So the handler here only stores the signal's number and writes it to a
non-blocking pipe (``os.write``: no Python lock); a thread of the process reads the pipe and does the
work (sets events, stops children), where taking a lock only ever waits for another thread.

An event loop's own ``loop.add_signal_handler`` is safe already (asyncio does the same with its own pipe):
the worker roles use that.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterable
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalPipe:
    """SIGINT and SIGTERM (and any other signal :meth:`handle` is installed for) as bytes on a pipe."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # a full pipe drops the byte; the reader wakes up anyway
        self._owner = os.getpid()
        self.received: int | None = None  # the last stop signal, once one came

    def install(self, signals: Iterable[int] = STOP_SIGNALS) -> SignalPipe:
        """Handle ``signals`` with :meth:`handle` from now on (call in the main thread)."""
        for number in signals:
            signal.signal(number, self.handle)
        return self

    def handle(self, number: int, frame: FrameType | None = None) -> None:
        """The signal handler: note ``number`` and write it to the pipe; nothing that takes a lock.

        In a child forked from this process before it installed handlers of its own (granian forks its
        API worker, which loads the app before it handles signals), SIGINT and SIGTERM do what they would
        do with no handler at all: the child ends (it serves nothing yet), rather than the signal going
        unnoticed and its parent waiting for it; any other signal is ignored there."""
        if os.getpid() != self._owner:
            if number in STOP_SIGNALS:
                signal.signal(number, signal.SIG_DFL)
                os.kill(os.getpid(), number)
            return
        if number in STOP_SIGNALS:
            self.received = number
        try:
            os.write(self._write, bytes((number,)))
        except BlockingIOError:  # thousands of signals unread: the reader has plenty to wake up for
            pass

    def wait(self, timeout: float | None = None) -> list[int]:
        """Block until a signal came (at most ``timeout`` seconds; None: as long as it takes); the signal
        numbers read since the last call, oldest first (none after a timeout)."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        return list(os.read(self._read, 256)) if ready else []

    def close(self) -> None:
        """Close the pipe (once no handler writes to it any more)."""
        os.close(self._read)
        os.close(self._write)
