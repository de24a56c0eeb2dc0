"""Closed-loop HTTP/1.1 keep-alive load generator on raw asyncio sockets, run in its own process.

``await run_load(spec)`` starts ``python -m bench.loadgen``, hands it the spec on stdin and
reads the result from stdout, so the load never shares an event loop (or a GIL) with the
server or with the benchmark that drives it. Each of ``connections`` keep-alive connections
sends one prepared request, reads the whole response (Content-Length), records the latency
with ``perf_counter_ns`` and sends the next one at once (or on a schedule when ``rate`` is
set). Requests are taken round-robin from ``requests`` by one shared cursor. Bounded by time
(``warmup`` + ``duration``; only responses completed inside the measured window count) or by
``count`` (exactly that many requests, all measured).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import msgspec

from bench.client import parse_head

ROOT = Path(__file__).resolve().parents[1]


class LoadSpec(msgspec.Struct, kw_only=True):
    """What to send, how hard and for how long."""

    port: int
    requests: list[bytes]  # complete raw requests, sent round-robin
    connections: int = 32
    duration: float = 5.0  # measured seconds (time-bounded mode)
    warmup: float = 1.0  # seconds of load before the measured window
    count: int = 0  # > 0: send exactly this many requests instead, all measured
    rate: float = 0.0  # > 0: pace to this many requests per second in total
    expect: bytes = b""  # a good response's body contains this (else it counts as bad)
    tally: bytes = b""  # count the values that follow this marker in bodies, e.g. b'"code":"'
    host: str = "127.0.0.1"


class LoadResult(msgspec.Struct, kw_only=True):
    """Throughput and latency of the measured responses."""

    completed: int  # responses in the measured window
    total: int  # responses including the warm-up
    good: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float
    statuses: dict[str, int]
    tallies: dict[str, int]
    lost_connections: int
    loadgen_cpu: float  # CPU seconds / wall seconds of the generator process (1.0 = one core busy)
    bad_sample: str = ""


class _Conn(asyncio.Protocol):
    def __init__(self, run: _Run) -> None:
        self.run, self.buf = run, bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_at, self.status, self.body_at, self.end, self.next_at = 0, 0, -1, 0, 0.0
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.body_at < 0:
                at = buf.find(b"\r\n\r\n")
                if at < 0:
                    return
                self.status, length = parse_head(bytes(buf[:at]))
                self.body_at, self.end = at + 4, at + 4 + length
            if len(buf) < self.end:
                return
            body = bytes(buf[self.body_at:self.end])
            del buf[:self.end]
            self.body_at = -1
            self.run.completed(self, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.lost(self)


class _Run:
    def __init__(self, spec: LoadSpec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec, self.loop = spec, loop
        self.cursor, self.active = 0, 0
        self.latencies: list[int] = []
        self.statuses: dict[str, int] = {}
        self.tallies: dict[str, int] = {}
        self.good, self.lost_connections, self.bad_sample, self.total = 0, 0, "", 0
        self.measure_from = self.stop_at = self.first_sent = self.last_done = 0
        self.interval = spec.connections / spec.rate if spec.rate > 0 else 0.0
        self.finished: asyncio.Future[None] = loop.create_future()

    def start(self, conns: list[_Conn]) -> None:
        now = time.perf_counter_ns()
        self.first_sent = now
        self.measure_from = now + int(self.spec.warmup * 1e9) if not self.spec.count else now
        self.stop_at = self.measure_from + int(self.spec.duration * 1e9) if not self.spec.count else 1 << 62
        self.active = len(conns)
        for i, conn in enumerate(conns):
            conn.next_at = self.loop.time() + i * self.interval / len(conns)
            self._schedule(conn)

    def _schedule(self, conn: _Conn) -> None:
        if self.spec.count and self.cursor >= self.spec.count or time.perf_counter_ns() >= self.stop_at:
            self._finish(conn)
        elif self.interval:
            conn.next_at = max(conn.next_at + self.interval, self.loop.time())
            self.loop.call_at(conn.next_at, self._send, conn)
        else:
            self._send(conn)

    def _send(self, conn: _Conn) -> None:
        requests = self.spec.requests
        request = requests[self.cursor % len(requests)]
        self.cursor += 1
        assert conn.transport is not None
        conn.sent_at = time.perf_counter_ns()
        conn.transport.write(request)

    def completed(self, conn: _Conn, body: bytes) -> None:
        now = time.perf_counter_ns()
        self.total += 1
        if self.measure_from <= now <= self.stop_at:
            self.latencies.append(now - conn.sent_at)
            self.last_done = now
            key = str(conn.status)
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if self.spec.expect in body and conn.status < 400:
                self.good += 1
            elif not self.bad_sample:
                self.bad_sample = f"HTTP {conn.status}: {body[:300].decode(errors='replace')}"
            if self.spec.tally:
                at = body.find(self.spec.tally)
                if at >= 0:
                    start = at + len(self.spec.tally)
                    value = body[start:body.find(b'"', start)].decode(errors="replace")
                    self.tallies[value] = self.tallies.get(value, 0) + 1
        self._schedule(conn)

    def lost(self, conn: _Conn) -> None:
        if not conn.finished:
            self.lost_connections += 1
            self._finish(conn)

    def _finish(self, conn: _Conn) -> None:
        if conn.finished:
            return
        conn.finished = True
        self.active -= 1
        if self.active == 0 and not self.finished.done():
            self.finished.set_result(None)


def _percentile(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6 if ordered else 0.0


async def generate(spec: LoadSpec) -> LoadResult:
    """Run the load described by ``spec`` in this process's event loop."""
    loop = asyncio.get_running_loop()
    run = _Run(spec, loop)
    conns = [_Conn(run) for _ in range(spec.connections)]
    for conn in conns:
        await loop.create_connection(lambda conn=conn: conn, spec.host, spec.port)  # type: ignore[misc]
    cpu, wall = time.process_time(), time.perf_counter()
    run.start(conns)
    limit = (spec.warmup + spec.duration) * 3 + 30 if not spec.count else None
    await asyncio.wait_for(run.finished, limit)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    seconds = (spec.duration if not spec.count else max(run.last_done - run.first_sent, 1) / 1e9)
    ordered = sorted(run.latencies)
    return LoadResult(
        completed=len(ordered), total=run.total, good=run.good, seconds=seconds, rps=len(ordered) / seconds,
        p50_ms=_percentile(ordered, 0.50), p90_ms=_percentile(ordered, 0.90), p99_ms=_percentile(ordered, 0.99),
        p999_ms=_percentile(ordered, 0.999), max_ms=ordered[-1] / 1e6 if ordered else 0.0,
        mean_ms=sum(ordered) / len(ordered) / 1e6 if ordered else 0.0, statuses=run.statuses,
        tallies=run.tallies, lost_connections=run.lost_connections, loadgen_cpu=cpu / wall,
        bad_sample=run.bad_sample)


async def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` in a separate ``python -m bench.loadgen`` process and return its result."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.loadgen", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(msgspec.json.encode(spec))
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed (exit {proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return msgspec.json.decode(out, type=LoadResult)


def main() -> None:
    """Process entry: a LoadSpec as JSON on stdin, the LoadResult as JSON on stdout."""
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=LoadSpec)
    result = asyncio.run(generate(spec))
    sys.stdout.buffer.write(msgspec.json.encode(result))
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing left to flush


if __name__ == "__main__":
    main()
