"""A deadline on reading a request's body (``KEYLEDGER_BODY_TIMEOUT``): a client that sent its headers and
then stops sending the body it announced is answered 408 ``REQUEST_TIMEOUT`` with ``Connection: close``,
rather than holding its connection and its handler for as long as it likes.

The app wraps every HTTP request's ``receive`` (``services.http.app.KeyledgerApp``), so the raw verify route
and every route Litestar serves get the same deadline. It starts with the first read of the body and
covers all of it; once the body is complete, ``receive`` is the server's own again (a streaming response
listens on it for the client's disconnect for as long as it streams).

One timer per process checks the bodies being read, every ``tick`` seconds and only while there are some,
and cancels the read of any past its deadline: a request costs two dictionary writes per read, not a timer
of its own (``asyncio.timeout`` costs about 7 µs per read, two reads per POST, against a verify's ~140 µs).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.types import Receive, ReceiveMessage

from keyledger.services.http.errors import ApiError

REQUEST_TIMEOUT = "REQUEST_TIMEOUT"


def request_timeout(seconds: float) -> ApiError:
    """408 ``REQUEST_TIMEOUT``: the body did not arrive in time; the connection is closed after the answer."""
    return ApiError(408, REQUEST_TIMEOUT, f"the request body did not arrive within {seconds:g} s",
                    headers={"Connection": "close"})


class BodyDeadline:
    """Gives every request at most ``seconds`` to send its body, checked every ``tick`` seconds."""

    def __init__(self, seconds: float, tick: float = 0.1) -> None:
        self.seconds, self._tick = seconds, tick
        self._reading: dict[asyncio.Task[Any], float] = {}  # task waiting for body bytes -> its deadline
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def receive(self, receive: Receive) -> Receive:
        """``receive`` of one request, with the deadline on its body."""
        return _TimedReceive(self, receive)

    def reading(self, task: asyncio.Task[Any], deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        """``task`` waits for body bytes until ``deadline`` (``loop`` time)."""
        self._reading[task] = deadline
        if self._timer is None or self._loop is not loop:
            self._loop, self._timer = loop, loop.call_later(self._tick, self._sweep)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled because its body is late."""
        return task in self._expired

    def done(self, task: asyncio.Task[Any]) -> None:
        """``task`` no longer waits for body bytes."""
        self._reading.pop(task, None)
        self._expired.discard(task)

    def _sweep(self) -> None:
        """Cancel every body read past its deadline; again in ``tick`` seconds while reads go on."""
        assert self._loop is not None
        now = self._loop.time()
        for task, deadline in list(self._reading.items()):
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._timer = self._loop.call_later(self._tick, self._sweep) if self._reading else None


class _TimedReceive:
    """One request's ``receive`` under its :class:`BodyDeadline`."""

    __slots__ = ("_deadlines", "_receive", "_deadline", "_complete")

    def __init__(self, deadlines: BodyDeadline, receive: Receive) -> None:
        self._deadlines, self._receive = deadlines, receive
        self._deadline: float | None = None  # set by the first read
        self._complete = False

    async def __call__(self) -> ReceiveMessage:
        if self._complete:
            return await self._receive()
        deadlines = self._deadlines
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + deadlines.seconds
        deadlines.reading(task, self._deadline, loop)
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            task.uncancel()  # the deadline's cancel, not the task's: it goes on to answer 408
            raise request_timeout(deadlines.seconds) from None
        finally:
            deadlines.done(task)
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._complete = True
        return message
