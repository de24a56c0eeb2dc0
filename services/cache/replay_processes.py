"""Replay's folding processes: one per share of the keys, each started fresh (``spawn``: the coordinator
runs an event loop, which a forked child must not inherit) and each reporting to the coordinator over a
pipe of its own: its progress, then ``done`` with its counts, or ``failed`` with the error. A process
that ends without saying ``done`` (killed, crashed) fails the replay as surely as one that says why."""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from keyledger.services.storage.replay_source import Share

# A share's work, run in its process: (*args, share, report progress) -> (events folded, keys written).
ShareWork = Callable[..., Coroutine[Any, Any, tuple[int, int]]]
TERMINATE_SECONDS = 5.0  # a process told to stop (another one failed) is killed after this long


class ReplayFailed(Exception):
    """A folding process failed or ended without finishing its share; nothing was swapped in."""


async def fold_in_processes(work: ShareWork, args: tuple[Any, ...], shares: int,
                            progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Run ``work(*args, share, report)`` for each of ``shares`` shares in a process of its own and wait for
    all of them; returns the events and keys summed over the shares. ``work`` must be a module-level
    function (the process imports it). ``progress`` gets the events folded so far, over all shares.
    The first failure stops the other processes and raises ReplayFailed."""
    context = multiprocessing.get_context("spawn")
    done = [0] * shares
    running: list[tuple[BaseProcess, Connection]] = []
    finished = False

    def report(index: int, events: int) -> None:
        done[index] = events
        if progress is not None:
            progress(sum(done))

    try:
        for index in range(shares):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_run_share, args=(work, args, Share(index, shares), sender),
                                      name=f"keyledger-replay-{index + 1}-of-{shares}", daemon=True)
            process.start()
            sender.close()  # the child holds the only sending end: its exit reads as end-of-file here
            running.append((process, receiver))
        tasks = [asyncio.ensure_future(_follow(index, process, receiver, report))
                 for index, (process, receiver) in enumerate(running)]
        try:
            ended, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        failures = [task.exception() for task in tasks if task in ended and task.exception() is not None]
        if failures:
            raise failures[0]  # type: ignore[misc]
        results = [task.result() for task in tasks]
        finished = True
        return sum(events for events, _ in results), sum(keys for _, keys in results)
    finally:
        await _stop(running, terminate=not finished)


async def _follow(index: int, process: BaseProcess, receiver: Connection,
                  report: Callable[[int, int], None]) -> tuple[int, int]:
    """Read one process's messages until it is done; ReplayFailed if it fails or ends first."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(receiver.fileno(), readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            while receiver.poll():
                try:
                    kind, value = receiver.recv()
                except EOFError:
                    await asyncio.to_thread(process.join, TERMINATE_SECONDS)
                    raise ReplayFailed(f"{process.name} ended (exit code {process.exitcode}) before finishing "
                                       "its share") from None
                if kind == "progress":
                    report(index, value)
                elif kind == "done":
                    return value  # type: ignore[no-any-return]
                else:
                    raise ReplayFailed(f"{process.name} failed: {value}")
    finally:
        loop.remove_reader(receiver.fileno())


async def _stop(running: list[tuple[BaseProcess, Connection]], terminate: bool) -> None:
    """Wait for every process to end; with ``terminate`` (a failure) tell those still running to stop."""
    for process, receiver in running:
        receiver.close()
        if terminate and process.is_alive():
            process.terminate()
    for process, _ in running:
        await asyncio.to_thread(process.join, TERMINATE_SECONDS)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join)


def _run_share(work: ShareWork, args: tuple[Any, ...], share: Share, sender: Connection) -> None:
    """A folding process's body: run the share's work, report progress, then done or failed."""
    try:
        result = asyncio.run(work(*args, share, lambda events: sender.send(("progress", events))))
    except BaseException as exc:  # noqa: BLE001 - whatever it was, the coordinator is told, then we exit 1
        sender.send(("failed", f"{type(exc).__name__}: {exc}"))
        sender.close()
        sys.exit(1)
    sender.send(("done", result))
    sender.close()
