"""Waiting on a condition with a deadline, never for a fixed time: a test that sleeps and then
asserts fails when the machine is slow and wastes time when it is fast."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

DEFAULT_TIMEOUT = 20.0
DEFAULT_INTERVAL = 0.02


def _failure(condition: object, timeout: float, what: str | None, explain: Callable[[], str] | None) -> AssertionError:
    name = what or getattr(condition, "__qualname__", repr(condition))
    details = f"\n{explain()}" if explain is not None else ""
    return AssertionError(f"timed out after {timeout:g}s waiting for {name}{details}")


@overload
async def until(condition: Callable[[], Awaitable[T]], timeout: float = ..., interval: float = ...,
                what: str | None = ..., explain: Callable[[], str] | None = ...) -> T: ...
@overload
async def until(condition: Callable[[], T], timeout: float = ..., interval: float = ...,
                what: str | None = ..., explain: Callable[[], str] | None = ...) -> T: ...
async def until(condition: Callable[[], object], timeout: float = DEFAULT_TIMEOUT,
                interval: float = DEFAULT_INTERVAL, what: str | None = None,
                explain: Callable[[], str] | None = None) -> object:
    """Call ``condition`` (plain or async) every ``interval`` seconds until it returns something
    truthy, and return that. After ``timeout`` seconds fail the test, saying ``what`` was awaited
    and, when given, ``explain()`` (the state that would help to understand why)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(condition, timeout, what, explain)
        await asyncio.sleep(interval)


def until_sync(condition: Callable[[], T], timeout: float = DEFAULT_TIMEOUT, interval: float = DEFAULT_INTERVAL,
               what: str | None = None, explain: Callable[[], str] | None = None) -> T:
    """``until`` for tests without an event loop (e.g. polling a server over HTTP with httpx)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise _failure(condition, timeout, what, explain)
        time.sleep(interval)
