"""Revocation propagation across API replicas (DESIGN: visible on every replica, p99 ≤ 20 ms, also under load).

Two replicas on one database and one JetStream stream: A is ``keyledger serve`` (relay,
projector and audit sink in-process), B is ``keyledger serve --no-workers`` (it learns of
events only through JetStream). For each of ``REVOCATIONS`` keys, one after another: create
it on A, verify it on B until VALID (B has the key and remembers its secret), revoke it on A,
then verify on B back to back until B answers REVOKED. Measured from the moment A's revoke
response has been read to the moment B's refusing answer has been read; the resolution is one
verify round trip. A NATS subscriber in the benchmark timestamps each revoke event's arrival
on the stream, splitting the time into "store → relay → NATS" and "NATS → B".
A key command returns once every replica holds it (the replica roll), so B should refuse at its first
answer: how many of its first answers were still VALID is reported, and how long the revoke call took.
Cheap argon2 (t=1, 1 MiB) here: only the first verify of each key on B pays it, before the clock runs.

A second phase repeats this while B also serves warm verifies on ``LOAD_CONNECTIONS``
connections from ``bench.loadgen`` (up to ``LOADED_REVOCATIONS`` in ``LOADED_SECONDS``): the
probe then waits in B's queue like every other request, so its resolution is coarser.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import nats
from nats.aio.msg import Msg

from bench.client import build_request
from bench.common import BenchContext, BenchResult, Row
from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.servers import Api, private_stack, start_api

REVOCATIONS, TARGET_P99_MS = 250, 20.0
LOAD_CONNECTIONS, LOADED_REVOCATIONS, LOADED_SECONDS = 16, 200, 6.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def until_code(api: Api, token: str, wanted: str, allowed: tuple[str, ...], pause: float = 0.0,
                     timeout: float = 10.0) -> int:
    """Verify on ``api`` until the answer is ``wanted``; returns the number of verifies it took."""
    deadline, polls = time.monotonic() + timeout, 0
    while True:
        code = await api.verify(token)
        polls += 1
        if code == wanted:
            return polls
        if code not in allowed or time.monotonic() > deadline:
            raise AssertionError(f"replica answered {code} while waiting for {wanted}")
        if pause:
            await asyncio.sleep(pause)


class Timings:
    """Per revocation: ms until B refused, ms until the event was on NATS, verifies B answered meanwhile."""

    def __init__(self) -> None:
        self.visible: list[float] = []
        self.on_nats: list[float] = []
        self.split: list[tuple[float, float | None]] = []  # (visible on B, on NATS) per revocation
        self.polls: list[int] = []
        self.poll_ms: list[float] = []
        self.created_ms: list[float] = []
        self.call_ms: list[float] = []  # the revoke call itself (it returns once every replica holds it)


async def one(a: Api, b: Api, arrivals: dict[str, float], timings: Timings, i: int) -> None:
    """Create, warm on B, revoke on A, wait for B to refuse."""
    key_id, secret = await a.create_key(f"revocation {i}")
    created = time.perf_counter()
    await until_code(b, secret, "VALID", ("NOT_FOUND",), pause=0.001)
    timings.created_ms.append((time.perf_counter() - created) * 1000)
    sent = time.perf_counter()
    await a.client.json("POST", f"/v1/keys/{key_id}/revoke", {"reason": "bench"}, a.headers(), expect=200)
    revoked = time.perf_counter()
    timings.call_ms.append((revoked - sent) * 1000)
    polls = await until_code(b, secret, "REVOKED", ("VALID",))
    done = time.perf_counter()
    timings.visible.append((done - revoked) * 1000)
    timings.polls.append(polls)
    timings.poll_ms.append((done - revoked) * 1000 / polls)
    on_nats = max(0.0, arrivals[key_id] - revoked) * 1000 if key_id in arrivals else None
    if on_nats is not None:
        timings.on_nats.append(on_nats)
    timings.split.append(((done - revoked) * 1000, on_nats))


async def measure(a: Api, b: Api, nats_url: str, subject_prefix: str, count: int,
                  seconds: float | None = None) -> Timings:
    """``count`` revocations one after another (fewer if ``seconds`` run out), NATS arrivals timestamped."""
    arrivals: dict[str, float] = {}

    async def seen(msg: Msg) -> None:
        if b'"key.revoked"' in msg.data:
            arrivals[msg.subject.rsplit(".", 1)[1]] = time.perf_counter()

    nc = await nats.connect(nats_url, name="bench-revocation")  # the benchmark's own probe, a plain client
    try:
        await nc.subscribe(f"{subject_prefix}.>", cb=seen)  # core NATS sees JetStream publishes live
        timings, deadline = Timings(), time.monotonic() + (seconds or 1e9)
        for i in range(count):
            if time.monotonic() > deadline:
                break
            await one(a, b, arrivals, timings, i)
        return timings
    finally:
        await nc.close()


async def measure_loaded(a: Api, b: Api, nats_url: str, subject_prefix: str) -> tuple[Timings, LoadResult]:
    """Revocations while B serves warm verifies on LOAD_CONNECTIONS connections."""
    _, secret = await a.create_key("load")
    await until_code(b, secret, "VALID", ("NOT_FOUND",), pause=0.001)
    spec = LoadSpec(port=b.port, requests=[build_request("POST", "/v1/verify", {"key": secret, "scope": "read:data"})],
                    connections=LOAD_CONNECTIONS, warmup=0.5, duration=LOADED_SECONDS, expect=b'"valid":true')
    load = asyncio.create_task(run_load(spec))
    await asyncio.sleep(1.0)  # the generator process starts and warms up
    timings = await measure(a, b, nats_url, subject_prefix, LOADED_REVOCATIONS, LOADED_SECONDS - 1.0)
    return timings, await load


def rows(t: Timings, loaded: Timings, load: LoadResult, command: str) -> list[Row]:
    """p99 against the target, plus the diagnostics."""
    p99, loaded_p99 = pct(t.visible, 0.99), pct(loaded.visible, 0.99)
    late_valid = sum(polls > 1 for polls in t.polls + loaded.polls)  # B's first answer after the call was VALID
    under = f"B serving {load.rps:,.0f} verifies/s on {LOAD_CONNECTIONS} conns"
    out = [
        Row(f"revocation visible on replica B, p99 of {len(t.visible)}", p99, "ms",
            target=f"≤ {TARGET_P99_MS:.0f} ms", met=p99 <= TARGET_P99_MS, command=command),
        Row("revocation visible on replica B, p50", pct(t.visible, 0.5), "ms", target="(diagnostic)",
            command=command),
        Row("revocation visible on replica B, max", max(t.visible), "ms", target="(diagnostic)", command=command),
        Row("probe resolution: one verify round trip to B (median)", statistics.median(t.poll_ms), "ms",
            target="(diagnostic)", command=command),
        Row("key creation usable on replica B, p99 (same path, 1 ms polls)", pct(t.created_ms, 0.99), "ms",
            target="(diagnostic)", command=command),
        Row("revoke call (returns once every replica holds it), p50", pct(t.call_ms, 0.5), "ms",
            target="(diagnostic)", command=command),
        Row("revoke call, p99", pct(t.call_ms, 0.99), "ms", target="(diagnostic)", command=command),
        Row("revocations B still answered VALID after the call returned (idle + under load)",
            late_valid, "answers", target="0", met=late_valid == 0, command=command),
        Row(f"revocation visible on B under load ({under}), p99 of {len(loaded.visible)}", loaded_p99, "ms",
            target=f"≤ {TARGET_P99_MS:.0f} ms", met=loaded_p99 <= TARGET_P99_MS, command=command),
        Row("revocation visible on B under load, p50", pct(loaded.visible, 0.5), "ms", target="(diagnostic)",
            command=command),
        Row("probe resolution under load: one verify round trip to B (median)", statistics.median(loaded.poll_ms),
            "ms", target="(diagnostic)", command=command),
        Row("revoke call under load, p99", pct(loaded.call_ms, 0.99), "ms", target="(diagnostic)", command=command),
    ]
    if t.on_nats:
        out.insert(3, Row("revoke response → event on NATS (relay), p99", pct(t.on_nats, 0.99), "ms",
                          target="(diagnostic)", command=command))
    return out


def slowest(idle: Timings, loaded: Timings, count: int = 5) -> str:
    """The slowest revocations of each phase, split into relay (store → NATS) and replica B (NATS → B)."""
    lines = ["### Revocation: the slowest ones, split", "",
             "relay = revoke response → the event seen on NATS by the benchmark's subscriber; "
             "B = the rest, until B refused (within one verify round trip).", "",
             "| phase | visible on B, ms | relay, ms | B, ms |", "| --- | ---: | ---: | ---: |"]
    for name, t in (("idle", idle), ("B under load", loaded)):
        for visible, on_nats in sorted(t.split, reverse=True)[:count]:
            relay = f"{on_nats:.1f}" if on_nats is not None else "?"
            rest = f"{visible - on_nats:.1f}" if on_nats is not None else "?"
            lines.append(f"| {name} | {visible:.1f} | {relay} | {rest} |")
    return "\n".join(lines)


def _summary(name: str, t: Timings) -> str:
    on_nats = f"{pct(t.on_nats, 0.5):.1f}" if t.on_nats else "?"
    return (f"  {name}: {len(t.visible)} revocations, B refuses after p50 {pct(t.visible, 0.5):.1f} ms, "
            f"p99 {pct(t.visible, 0.99):.1f} ms, max {max(t.visible):.1f} ms; event on NATS p50 {on_nats} ms")


async def run(ctx: BenchContext) -> BenchResult:
    """Two replicas on one store and stream; sequential revocations, idle and with B under load."""
    async with private_stack(ctx) as stack:
        a = await start_api(stack, workers=True)
        try:
            b = await start_api(stack, workers=False, admin_from=a)
            try:
                prefix = stack.settings.nats_subject_prefix
                idle = await measure(a, b, stack.nats_url, prefix, REVOCATIONS)
                _log(_summary("idle", idle))
                loaded, load = await measure_loaded(a, b, stack.nats_url, prefix)
                _log(_summary(f"B under load ({load.rps:,.0f} verifies/s)", loaded))
            finally:
                await b.stop()
        finally:
            await a.stop()
    return BenchResult(rows(idle, loaded, load, ctx.command), [slowest(idle, loaded)])
