"""The periodic loop rides out the failures its caller names (logged, retried at the next turn) and ends on
any other: it knows no adapter's errors itself."""

from __future__ import annotations

import asyncio
import logging

import pytest

from keyledger.services.periodic import every


class Outage(Exception):
    pass


async def test_a_named_failure_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    stop, calls = asyncio.Event(), list[int]()

    async def action() -> None:
        calls.append(len(calls))
        if len(calls) < 3:
            raise Outage("store away")
        stop.set()

    with caplog.at_level(logging.WARNING):
        await every(stop, 0.0, action, logging.getLogger("test.periodic"), "flushing", first=True, retry=(Outage,))
    assert len(calls) == 3
    assert [r.getMessage() for r in caplog.records] == ["flushing failed (store away); will retry"] * 2


async def test_any_other_failure_ends_the_loop() -> None:
    stop = asyncio.Event()

    async def action() -> None:
        raise Outage("not named")

    with pytest.raises(Outage):
        await every(stop, 0.0, action, logging.getLogger("test.periodic"), "flushing", first=True)
