"""SignalPipe: a signal handler that takes no lock, so a signal never deadlocks the thread it interrupts."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from keyledger.services.signals import SignalPipe


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    """Whatever a test installs for SIGUSR1 and SIGTERM is undone after it."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def test_a_signal_that_interrupts_the_holder_of_the_waiters_lock_still_stops_it(restore_handlers: None) -> None:
    """The deadlock of a handler that calls ``Event.set()``: the signal comes while the main thread holds the
    lock that setting the event takes (as inside ``Event.wait()``). Here the handler only writes to the pipe;
    a thread reads it and takes the lock once the main thread lets go of it."""
    pipe = SignalPipe().install([signal.SIGUSR1])
    stop = threading.Condition()
    stopped: list[int] = []

    def act() -> None:
        numbers = pipe.wait(10)
        with stop:
            stopped.extend(numbers)
            stop.notify_all()

    reader = threading.Thread(target=act, daemon=True)
    reader.start()
    with stop:  # the handler runs in this thread, between two bytecodes of this block: while it holds the lock
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(1000):  # bytecodes enough for the interpreter to run the handler here
            pass
        assert stop.wait_for(lambda: stopped, timeout=10), "the signal never reached the reader"
    reader.join(10)
    assert stopped == [signal.SIGUSR1]
    pipe.close()


def test_a_stop_signal_is_noted(restore_handlers: None) -> None:
    pipe = SignalPipe().install([signal.SIGUSR1, signal.SIGTERM])
    os.kill(os.getpid(), signal.SIGUSR1)
    assert pipe.wait(10) == [signal.SIGUSR1]
    assert pipe.received is None  # not a stop signal
    os.kill(os.getpid(), signal.SIGTERM)
    assert pipe.wait(10) == [signal.SIGTERM]
    assert pipe.received == signal.SIGTERM
    assert pipe.wait(0) == []
    pipe.close()


def test_a_forked_child_without_handlers_of_its_own_ends_on_sigterm(restore_handlers: None) -> None:
    """granian forks its API worker with the parent's handlers; until the worker installs its own, SIGTERM ends
    it (it used to note the signal on its copy of the parent's state and serve on, its parent waiting for it)."""
    pipe = SignalPipe().install([signal.SIGTERM])
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child: wait to be signalled; still here after 10 s means it was not
        try:
            os.write(ready_write, b"!")  # past os.fork's own start-up, which drops signals that came during it
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            os._exit(0)
    os.read(ready_read, 1)
    os.close(ready_read)
    os.close(ready_write)
    os.kill(child, signal.SIGTERM)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, f"child status {status}"
    assert pipe.wait(0) == [], "the child's signal is none of the parent's business"
    pipe.close()
