"""BodyDeadline: a late body is refused with 408; a complete one frees ``receive`` of any deadline; other
cancellations stay cancellations. (Through the real server: tests/e2e/test_body_timeout.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from keyledger.services.http.body_deadline import BodyDeadline
from keyledger.services.http.errors import ApiError


class Client:
    """A request's ``receive``: hands out ``chunks`` as they are released, then waits for the disconnect."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks, self.released = list(chunks), asyncio.Event()
        self.gone = asyncio.Event()

    async def receive(self) -> Any:
        if self.chunks:
            chunk = self.chunks.pop(0)
            if not self.chunks:
                await self.released.wait()  # the last chunk comes only once released
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        await self.gone.wait()
        return {"type": "http.disconnect"}


def reader(deadline: BodyDeadline, client: Client) -> Callable[[], Coroutine[Any, Any, dict[str, Any]]]:
    """The client's ``receive`` under ``deadline``, as a coroutine function of plain dicts."""
    receive = deadline.receive(client.receive)

    async def read() -> dict[str, Any]:
        return dict(await receive())

    return read


async def test_a_body_that_stops_arriving_is_refused_with_408_and_connection_close() -> None:
    client = Client(b'{"key": ', b'"kl_..."}')
    receive = reader(BodyDeadline(0.05, tick=0.01), client)
    assert (await receive())["more_body"] is True
    with pytest.raises(ApiError) as refused:
        await asyncio.wait_for(receive(), 10)
    assert (refused.value.status, refused.value.code) == (408, "REQUEST_TIMEOUT")
    assert refused.value.headers == {"Connection": "close"}
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]  # not left half-cancelled


async def test_a_complete_body_leaves_receive_without_a_deadline() -> None:
    """A streaming response listens on ``receive`` for the disconnect for as long as it streams."""
    deadlines = BodyDeadline(0.05, tick=0.01)
    client = Client(b"{}")
    client.released.set()
    receive = reader(deadlines, client)
    assert (await receive())["more_body"] is False
    listening = asyncio.create_task(receive())
    late = reader(deadlines, Client(b'{"key": ', b'"kl_..."}'))  # a body begun after it, that stops arriving
    assert (await late())["more_body"] is True
    with pytest.raises(ApiError):  # refused at its deadline: by then the first body's deadline passed too
        await asyncio.wait_for(late(), 10)
    assert not listening.done(), listening
    client.gone.set()
    assert (await listening)["type"] == "http.disconnect"


async def test_a_cancelled_request_stays_cancelled() -> None:
    client = Client(b"{", b"}")
    receive = reader(BodyDeadline(10, tick=0.01), client)
    await receive()
    reading = asyncio.create_task(receive())
    await asyncio.sleep(0)  # let it start waiting for the last chunk
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
