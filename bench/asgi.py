"""Call an ASGI app directly, without a server: per-request cost of the app alone, on one core.

``granian`` and the load generator are out of the picture, so this is the Python work a
request costs in the app (framework + handler + the background tasks the app runs in its
event loop), measured one request at a time as CPU time of this process. It moves far less
than req/s over HTTP when other work shares the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar

ASGI = {"version": "3.0", "spec_version": "2.3"}


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    """Run the app's ASGI lifespan: startup before the block, shutdown after it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set_result(None)
        elif message["type"] == "lifespan.startup.failed":
            started.set_exception(RuntimeError(message.get("message", "startup failed")))

    await inbox.put({"type": "lifespan.startup"})
    scope: Any = {"type": "lifespan", "asgi": ASGI, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, send))  # type: ignore[arg-type]
    await started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await task


def _scope(path: str, body: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": ASGI, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {}}


async def call(app: Litestar, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST through the app: (status, body)."""
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(_scope(path, body), receive, send)  # type: ignore[arg-type]
    return status, b"".join(chunks)


async def per_request_us(app: Litestar, path: str, bodies: list[bytes], count: int, expect: bytes) -> float:
    """Microseconds per request of ``count`` POSTs, one after another, bodies round-robin."""
    for body in bodies:  # warm-up, and a check that the answers are the expected ones
        status, answer = await call(app, path, body)
        if status != 200 or expect not in answer:
            raise AssertionError(f"{path}: HTTP {status} {answer[:300]!r}")
    started = time.process_time()  # CPU time: hardly moved by other processes sharing the cores
    for i in range(count):
        await call(app, path, bodies[i % len(bodies)])
        await asyncio.sleep(0)  # between requests the loop runs the app's background tasks, as under a server
    return (time.process_time() - started) / count * 1e6
