"""granian's main process for ``keyledger serve``, with signal handlers that take no lock.

granian's own handlers call ``threading.Event.set()`` on the event its main thread waits on in
``Event.wait()``: a signal that comes while that thread holds the event's lock deadlocks the process
(see :mod:`keyledger.services.signals`). Here the handlers granian installs only write the signal to a
:class:`~keyledger.services.signals.SignalPipe`; ``keyledger serve`` reads it in a thread and calls
:meth:`KeyledgerGranian.interrupt` or :meth:`KeyledgerGranian.reload`, which do what granian's handlers
would have done, from that thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyledger.services.signals import SignalPipe

if TYPE_CHECKING:  # granian's ``Granian`` is the process server (MPServer) or, without a GIL, the thread one
    from granian.server import MPServer as Granian
else:
    from granian import Granian


class KeyledgerGranian(Granian):
    """granian's server whose signal handlers (SIGINT, SIGTERM: stop; SIGHUP: reload the workers) only
    write to ``signals``."""

    def __init__(self, *args: Any, signals: SignalPipe, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signals = signals

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        """Installed by granian for SIGINT and SIGTERM: noted on the pipe, nothing else."""
        self._signals.handle(*args[:2])

    def signal_handler_reload(self, *args: Any, **kwargs: Any) -> None:
        """Installed by granian for SIGHUP: noted on the pipe, nothing else."""
        self._signals.handle(*args[:2])

    def interrupt(self) -> None:
        """Stop serving (granian's SIGINT/SIGTERM work: its serve loop wakes up, stops the workers and
        returns). Never from a signal handler."""
        super().signal_handler_interrupt()  # type: ignore[no-untyped-call]

    def reload(self) -> None:
        """Respawn the API workers gracefully (granian's SIGHUP work). Never from a signal handler."""
        super().signal_handler_reload()  # type: ignore[no-untyped-call]
