"""The Python SDK's own cost: the calling process's CPU time per ``verify`` over HTTP.

``Keyledger`` (sync) and ``AsyncKeyledger`` against a real ``keyledger serve`` on this machine, ``CALLS`` warm
verifies one after another (after ``WARMUP``), CPU time of this process (``time.process_time``: user +
system, whatever else runs on the machine) divided by the calls. Each client twice in the same run: on the
SDK's transport (pooled keep-alive connections read by httptools, the default) and on httpx
(``transport=httpx.HTTPTransport()``: every call through httpx, as the SDK did before), the baseline.
The verify round trips run one at a time, so the wall time per call (diagnostic) is mostly the server's.

The candidates the transport was chosen from (diagnostic rows): the same verify request, prepared once, sent by
each library alone (no plan, no decoding: each one's floor): httpx, urllib3 and ``http.client`` (sync);
httpx, httpcore, h11 on asyncio streams and aiohttp (async; aiohttp and urllib3 only when installed: the
project does not depend on them).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import msgspec

from bench.common import BenchContext, BenchResult, Row
from bench.servers import private_stack, start_api
from keyledger_client import AsyncKeyledger, Keyledger

CALLS, WARMUP, ROUNDS = 3_000, 300, 3
TARGET_US = 150.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def per_call(call: Callable[[], object]) -> tuple[float, float]:
    """(CPU µs, wall µs) per call of ``call``: the best of ``ROUNDS`` rounds of ``CALLS`` each (the least
    disturbed by the machine's other work)."""
    for _ in range(WARMUP):
        call()
    cpus, walls = [], []
    for _ in range(ROUNDS):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(CALLS):
            call()
        cpus.append((time.process_time() - cpu) * 1e6 / CALLS)
        walls.append((time.perf_counter() - wall) * 1e6 / CALLS)
    return min(cpus), min(walls)


async def per_await(call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """:func:`per_call` for a coroutine function, awaited one call at a time."""
    for _ in range(WARMUP):
        await call()
    cpus, walls = [], []
    for _ in range(ROUNDS):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(CALLS):
            await call()
        cpus.append((time.process_time() - cpu) * 1e6 / CALLS)
        walls.append((time.perf_counter() - wall) * 1e6 / CALLS)
    return min(cpus), min(walls)


def sync_figures(url: str, credential: str, secret: str) -> dict[str, tuple[float, float]]:
    """Sync client: the SDK's transport, then httpx."""
    figures = {}
    for name, transport in (("sdk", None), ("httpx", httpx.HTTPTransport())):
        with Keyledger(url, credential, transport=transport) as client:
            assert client.verify(secret, "read:data").valid
            figures[name] = per_call(partial(client.verify, secret, "read:data"))
    return figures


async def async_figures(url: str, credential: str, secret: str) -> dict[str, tuple[float, float]]:
    """Async client: the SDK's transport, then httpx."""
    figures = {}
    for name, transport in (("sdk", None), ("httpx", httpx.AsyncHTTPTransport())):
        async with AsyncKeyledger(url, credential, transport=transport) as client:
            assert (await client.verify(secret, "read:data")).valid
            figures[name] = await per_await(partial(client.verify, secret, "read:data"))
    return figures


def sync_candidates(url: str, headers: dict[str, str], body: bytes) -> dict[str, float]:
    """CPU µs per verify request sent by each sync library alone."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    found = {}
    with httpx.Client(base_url=url, headers=headers) as client:
        found["httpx Client"] = per_call(lambda: client.post("/v1/verify", content=body).content)[0]
    try:
        urllib3: Any = importlib.import_module("urllib3")  # (not a dependency of the project: when installed)
    except ImportError:
        pass
    else:
        with urllib3.HTTPConnectionPool(parts.hostname, parts.port) as pool:
            found["urllib3 pool"] = per_call(
                lambda: pool.urlopen("POST", "/v1/verify", body=body, headers=headers).data)[0]
    connection = http.client.HTTPConnection(parts.hostname, parts.port)

    def stdlib() -> bytes:
        connection.request("POST", "/v1/verify", body=body, headers=headers)
        return connection.getresponse().read()
    found["http.client"] = per_call(stdlib)[0]
    connection.close()
    return found


async def async_candidates(url: str, headers: dict[str, str], body: bytes) -> dict[str, float]:
    """CPU µs per verify request sent by each async library alone."""
    import h11
    import httpcore

    found = {}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        async def with_httpx() -> bytes:
            return (await client.post("/v1/verify", content=body)).content
        found["httpx AsyncClient"] = (await per_await(with_httpx))[0]
    async with httpcore.AsyncConnectionPool() as pool:
        raw_headers = [(b"host", b"127.0.0.1"), *((k.encode(), v.encode()) for k, v in headers.items())]

        async def with_httpcore() -> bytes:
            return (await pool.request("POST", url + "/v1/verify", headers=raw_headers, content=body)).content
        found["httpcore pool"] = (await per_await(with_httpcore))[0]
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    h11_headers = [("host", host), *headers.items(), ("content-length", str(len(body)))]
    state = h11.Connection(h11.CLIENT)

    async def with_h11() -> bytes:
        writer.write(state.send(h11.Request(method="POST", target="/v1/verify", headers=h11_headers))
                     + state.send(h11.Data(data=body)) + state.send(h11.EndOfMessage()))
        out = b""
        while True:
            event = state.next_event()
            if event is h11.NEED_DATA:
                state.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Data):
                out += event.data
            elif isinstance(event, h11.EndOfMessage):
                state.start_next_cycle()
                return out
    found["h11 on asyncio streams"] = (await per_await(with_h11))[0]
    writer.close()
    try:
        aiohttp: Any = importlib.import_module("aiohttp")  # (not a dependency of the project: when installed)
    except ImportError:
        return found
    async with aiohttp.ClientSession(url, headers=headers) as session:
        async def with_aiohttp() -> bytes:
            async with session.post("/v1/verify", data=body) as answer:
                read: bytes = await answer.read()
                return read
        found["aiohttp ClientSession"] = (await per_await(with_aiohttp))[0]
    return found


async def run(ctx: BenchContext) -> BenchResult:
    """Client CPU per verify, SDK transport vs httpx, sync and async."""
    async with private_stack(ctx) as stack:
        api = await start_api(stack, workers=True)
        try:
            _, secret = await api.create_key("sdk")
            url, credential = f"http://127.0.0.1:{api.port}", str(api.server.verify_credential)
            figures = {"Keyledger": await asyncio.to_thread(sync_figures, url, credential, secret),
                       "AsyncKeyledger": await async_figures(url, credential, secret)}
            headers = {"authorization": f"Bearer {credential}", "content-type": "application/json"}
            body = msgspec.json.encode({"key": secret, "scope": "read:data"})
            candidates = {**await asyncio.to_thread(sync_candidates, url, headers, body),
                          **await async_candidates(url, headers, body)}
        finally:
            await api.stop()
    rows = []
    for client, found in figures.items():
        (cpu, wall), (old_cpu, old_wall) = found["sdk"], found["httpx"]
        _log(f"  {client}.verify: {cpu:.0f} µs CPU ({wall:.0f} µs wall); on httpx {old_cpu:.0f} µs ({old_wall:.0f})")
        rows += [Row(f"SDK client CPU per verify over HTTP, {client} (the SDK's transport)", cpu, "µs", old_cpu,
                     f"{client} on httpx", f"≤ {TARGET_US:.0f} µs", cpu <= TARGET_US, ctx.command),
                 Row(f"SDK wall time per verify, one at a time, {client} (mostly the server's)", wall, "µs", old_wall,
                     f"{client} on httpx", "(diagnostic)", None, ctx.command)]
    for library, cpu in candidates.items():
        _log(f"  candidate {library}: {cpu:.0f} µs CPU")
        rows.append(Row(f"transport candidate, the verify request alone: {library}", cpu, "µs",
                        target="(diagnostic)", command=ctx.command))
    return BenchResult(rows)
