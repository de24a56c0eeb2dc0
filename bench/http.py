"""Warm ``POST /v1/verify`` over HTTP against a trivial Litestar endpoint, and cold verify over HTTP.

DESIGN: warm verify throughput ≥ 0.9 × a trivial POST endpoint of the same framework and
server settings; p99 ≤ 5 ms at 32 connections on a 2-core machine.

The API runs as ``keyledger serve`` does (granian, 1 ASGI worker, relay + projector + audit
sink in the same process) with production argon2 parameters; the baseline is
``bench.trivial_app`` under the same granian settings, receiving the same request bodies.
Both are loaded by ``bench.loadgen`` (a separate process, 32 keep-alive connections) in
alternating rounds; the median round by throughput is reported.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgspec
from argon2 import PasswordHasher, Type

from bench import wrk
from bench.client import build_request
from bench.common import BenchContext, BenchResult, Row
from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.pyspy import profiled
from bench.servers import (
    PRODUCTION_ARGON2,
    Api,
    TrivialServer,
    cpu_seconds,
    listening_pids,
    private_stack,
    stack_cpu_seconds,
    start_api,
    worker_pid,
)
from bench.wrk import WrkResult
from keyledger.services.config import Settings

CONNECTIONS, WARMUP, SECONDS, ROUNDS, KEYS, COLD_KEYS = 32, 1.0, 5.0, 3, 16, 8
# with the default configuration (usage events durable before answering): throughput and p99 against the
# trivial app's in the same run
TARGET_RATIO, TARGET_P99_RATIO = 0.9, 1.25


def _log(message: str) -> None:
    print(message, flush=True, file=sys.stderr)


def verify_bodies(tokens: list[str]) -> list[dict[str, str]]:
    """The request bodies: each token asks for ``read:data`` (granted globally)."""
    return [{"key": token, "scope": "read:data"} for token in tokens]


def describe(name: str, measured: Measured) -> str:
    """One line for the log."""
    result = measured.load
    return (f"  {name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
            f"server CPU {measured.cpu_us:.0f} µs/req, loadgen CPU {result.loadgen_cpu:.0%}")


@dataclass(frozen=True)
class Measured:
    """A load phase's result and the server's CPU time per response (all its threads)."""

    load: LoadResult
    cpu_us: float

    @property
    def rps(self) -> float:
        """Responses per second in the measured window."""
        return self.load.rps


async def load(port: int, pid: int | list[int], requests: list[bytes], expect: bytes = b'"valid":true',
               connections: int = CONNECTIONS, seconds: float = SECONDS) -> Measured:
    """One load phase on the server process ``pid`` (or processes, whose CPU is summed); fails when any
    response is not the expected one."""
    pids = pid if isinstance(pid, list) else [pid]
    cpu = sum(cpu_seconds(p) for p in pids)
    result = await run_load(LoadSpec(port=port, requests=requests, connections=connections, duration=seconds,
                                     warmup=WARMUP, expect=expect, tally=b'"code":"'))
    cpu = sum(cpu_seconds(p) for p in pids) - cpu
    if result.good != result.completed or result.lost_connections:
        raise AssertionError(f"unexpected responses: {result.statuses} {result.tallies} {result.bad_sample}")
    return Measured(result, cpu / max(result.total, 1) * 1e6)


class _Round(Protocol):
    @property
    def rps(self) -> float: ...


R = TypeVar("R", bound=_Round)


def median_round(results: list[R]) -> R:
    """The round with the median throughput."""
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


@dataclass(frozen=True)
class Cold:
    """Milliseconds of first verifies over HTTP and of raw argon2 verifies with the same parameters."""

    http_ms: list[float]
    raw_ms: list[float]


def raw_argon2_ms(count: int) -> list[float]:
    """Times of ``PasswordHasher.verify`` with the service's default parameters, in this process."""
    defaults = Settings()
    hasher = PasswordHasher(time_cost=defaults.argon2_time_cost, memory_cost=defaults.argon2_memory_kib,
                            parallelism=defaults.argon2_parallelism, type=Type.ID)
    secret_hash, times = hasher.hash("kl_bench-secret"), []
    for _ in range(count):
        started = time.perf_counter()
        hasher.verify(secret_hash, "kl_bench-secret")
        times.append((time.perf_counter() - started) * 1000)
    return times


async def cold_http(api: Api, count: int) -> list[float]:
    """Time of the first verify of each of ``count`` fresh keys over HTTP (idle server)."""
    times = []
    for _id, token in await api.create_keys(count, connections=2):
        started = time.perf_counter()
        assert await api.verify(token) == "VALID"
        times.append((time.perf_counter() - started) * 1000)
    return times


async def measure_serve(api: Api, trivial: TrivialServer,
                        stack_pids: list[int]) -> tuple[list[Measured], list[Measured]]:
    """Alternating rounds: trivial app, then keyledger, ``ROUNDS`` times (``stack_pids``: the Postgres and NATS
    servers, whose CPU is reported beside the API's)."""
    tokens = [token for _, token in await api.create_keys(KEYS)]
    for token in tokens:  # warm: the first verify of each secret pays argon2 once
        assert await api.verify(token) == "VALID"
    bodies = verify_bodies(tokens)
    verify_requests = [build_request("POST", "/v1/verify", body) for body in bodies]
    trivial_requests = [build_request("POST", "/echo", body) for body in bodies]
    trivials, verifies = [], []
    background = api.background_pids()
    for round_ in range(ROUNDS):
        trivials.append(await load(trivial.port, worker_pid(trivial.process.pid), trivial_requests))
        _log(describe(f"round {round_ + 1} trivial app", trivials[-1]))
        beside, servers = sum(cpu_seconds(pid) for pid in background), stack_cpu_seconds(stack_pids)
        async with profiled(api.worker_pid(), f"verify-http-round{round_ + 1}", SECONDS + WARMUP):
            verifies.append(await load(api.port, api.worker_pid(), verify_requests))
        beside, servers = sum(cpu_seconds(pid) for pid in background) - beside, stack_cpu_seconds(stack_pids) - servers
        per_request = 1e6 / max(verifies[-1].load.total, 1)
        _log(describe(f"round {round_ + 1} keyledger serve", verifies[-1])
             + f"; relay + projector + audit sink CPU {beside * per_request:.0f} µs/req, "
               f"Postgres + NATS CPU {servers * per_request:.0f} µs/req")
    return trivials, verifies


async def measure_api_only(api: Api, name: str = "keyledger serve --no-workers") -> Measured:
    """The same load on a ``--no-workers`` replica (no relay, projector or audit sink beside it); with
    ``serve --workers N``, the CPU of all N workers."""
    tokens = [token for _, token in await api.create_keys(KEYS)]
    for token in tokens:
        assert await api.verify(token) == "VALID"
    requests = [build_request("POST", "/v1/verify", body) for body in verify_bodies(tokens)]
    if len(api.worker_pids()) > 1:  # every worker keeps its own cache: warm them all (answers not checked)
        await run_load(LoadSpec(port=api.port, requests=requests, connections=CONNECTIONS, duration=5.0, warmup=0.0,
                                expect=b'"code":"', tally=b'"code":"'))
    result = await load(api.port, api.worker_pids(), requests)
    _log(describe(name, result))
    return result


def _table(trivials: list[Measured], verifies: list[Measured], api_only: Measured) -> str:
    lines = ["### Warm verify over HTTP: every round (32 connections, 1 s warm-up + 5 s measured)", "",
             "Server CPU = user + system seconds of the granian worker process (all threads) per response; "
             "unlike req/s it hardly moves when other work shares the machine.", "",
             "| round | server | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | server CPU µs/req "
             "| loadgen CPU |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    named = [(f"{i + 1}", name, m) for i, (t, v) in enumerate(zip(trivials, verifies, strict=True))
             for name, m in (("trivial app", t), ("keyledger serve", v))]
    for round_, name, m in [*named, ("—", "keyledger serve --no-workers", api_only)]:
        r = m.load
        lines.append(f"| {round_} | {name} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | {r.p99_ms:.2f} | "
                     f"{r.p999_ms:.2f} | {r.max_ms:.2f} | {m.cpu_us:.0f} | {r.loadgen_cpu:.0%} |")
    lines += ["", "Little's law bounds latency at saturation: mean latency = connections / throughput, so the "
              "trivial app's own p99 is the floor of this server setting, and the p99 target is a multiple of it. "
              "Both keyledger rounds run the default configuration: each answer waits until its usage event is "
              "in JetStream."]
    return "\n".join(lines)


def rows(trivial: Measured, serve: Measured, api_only: Measured, cold: Cold, command: str,
         two: Measured | None = None) -> list[Row]:
    """The result rows (median rounds)."""
    ratio = serve.rps / trivial.rps
    cold_ms, raw_ms = statistics.median(cold.http_ms), statistics.median(cold.raw_ms)
    return [
        Row("warm verify throughput, 32 conns (keyledger serve)", serve.rps, "req/s", trivial.rps,
            "trivial Litestar POST", f"≥ {TARGET_RATIO} × trivial", ratio >= TARGET_RATIO, command),
        Row("warm verify p99, 32 conns (keyledger serve)", serve.load.p99_ms, "ms", trivial.load.p99_ms,
            "trivial Litestar POST p99", f"≤ {TARGET_P99_RATIO} × trivial",
            serve.load.p99_ms <= TARGET_P99_RATIO * trivial.load.p99_ms, command),
        Row("warm verify p50, 32 conns (keyledger serve)", serve.load.p50_ms, "ms", trivial.load.p50_ms,
            "trivial Litestar POST p50", "(diagnostic)", None, command),
        Row("server CPU per warm verify (keyledger serve)", serve.cpu_us, "µs", trivial.cpu_us,
            "trivial Litestar POST", "≤ 1.2 × trivial", serve.cpu_us <= 1.2 * trivial.cpu_us, command),
        Row("warm verify throughput, API only (serve --no-workers)", api_only.rps, "req/s", trivial.rps,
            "trivial Litestar POST", "(diagnostic)", None, command),
        Row("server CPU per warm verify, API only (serve --no-workers)", api_only.cpu_us, "µs", trivial.cpu_us,
            "trivial Litestar POST", "(diagnostic)", None, command),
        Row("cold verify over HTTP (first verify of a fresh key, argon2 t=3, 64 MiB)", cold_ms, "ms", raw_ms,
            "raw PasswordHasher.verify", "(diagnostic: ≈ 1, one argon2)", None, command),
        *([] if two is None else [
            Row("warm verify throughput, 2 API workers (serve --workers 2 --no-workers)", two.rps, "req/s",
                api_only.rps, "1 worker (serve --no-workers)",
                "(diagnostic: the load generator shares the 2 cores)", None, command),
            Row("server CPU per warm verify, 2 API workers (both workers' CPU)", two.cpu_us, "µs", api_only.cpu_us,
                "1 worker (serve --no-workers)", "≈ 1 × one worker", two.cpu_us <= 1.2 * api_only.cpu_us, command),
        ]),
    ]


async def run(ctx: BenchContext) -> BenchResult:
    """Trivial app vs keyledger serve (alternating), then --no-workers, then cold verifies."""
    trivial = TrivialServer()
    try:
        async with private_stack(ctx) as stack:
            api = await start_api(stack, env=PRODUCTION_ARGON2)
            try:
                await trivial.wait_ready()
                servers = listening_pids(stack.database_url, stack.nats_url)
                trivials, verifies = await measure_serve(api, trivial, servers)
                by_wrk = await measure_with_wrk(api, trivial)
                trivial.stop()
                cold = Cold(await cold_http(api, COLD_KEYS), raw_argon2_ms(COLD_KEYS))
            finally:
                await api.stop()
            replica = await start_api(stack, workers=False, env=PRODUCTION_ARGON2, admin_from=api)
            try:
                api_only = await measure_api_only(replica)
            finally:
                await replica.stop()
            pair = await start_api(stack, workers=False, env=PRODUCTION_ARGON2, admin_from=api, processes=2)
            try:
                two = await measure_api_only(pair, "keyledger serve --workers 2 --no-workers")
            finally:
                await pair.stop()
            lossy = await start_api(stack, workers=False, env={**PRODUCTION_ARGON2, "KEYLEDGER_USAGE_DURABLE": "0"},
                                    admin_from=api)
            try:
                fast = await measure_api_only(lossy, "keyledger serve --no-workers, KEYLEDGER_USAGE_DURABLE=0")
            finally:
                await lossy.stop()
    finally:
        trivial.stop()
    _log(f"  cold verify over HTTP: median {statistics.median(cold.http_ms):.1f} ms; "
         f"raw argon2: median {statistics.median(cold.raw_ms):.1f} ms")
    lossy_rows = [  # what the default's durability costs: the same replica with lossy usage events
        Row("warm verify throughput, lossy usage events (--no-workers, KEYLEDGER_USAGE_DURABLE=0)",
            fast.rps, "req/s", api_only.rps, "the default (durable)", "(diagnostic)", None, ctx.command),
        Row("warm verify p50, lossy usage events (KEYLEDGER_USAGE_DURABLE=0)", fast.load.p50_ms, "ms",
            api_only.load.p50_ms, "the default (durable)", "(diagnostic)", None, ctx.command),
        Row("warm verify p99, lossy usage events (KEYLEDGER_USAGE_DURABLE=0)", fast.load.p99_ms, "ms",
            api_only.load.p99_ms, "the default (durable)", "(diagnostic)", None, ctx.command)]
    return BenchResult([*rows(median_round(trivials), median_round(verifies), api_only, cold, ctx.command, two),
                        *wrk_rows(by_wrk, ctx.command), *lossy_rows], [_table(trivials, verifies, api_only)])


async def measure_with_wrk(api: Api, trivial: TrivialServer) -> tuple[WrkResult, WrkResult] | None:
    """The trivial app and keyledger serve under ``wrk`` (alternating, ``ROUNDS`` rounds each; the median
    rounds by throughput), or None without wrk."""
    binary = wrk.available()
    if binary is None:
        _log("  wrk is not installed (Debian package wrk; make bench installs it as root): its rows are left out")
        return None
    tokens = [token for _, token in await api.create_keys(KEYS)]
    for token in tokens:
        assert await api.verify(token) == "VALID"
    bodies = [msgspec.json.encode(body) for body in verify_bodies(tokens)]
    trivials: list[WrkResult] = []
    verifies: list[WrkResult] = []
    for round_ in range(ROUNDS):
        for name, port, path, out in (("trivial app", trivial.port, "/echo", trivials),
                                      ("keyledger serve", api.port, "/v1/verify", verifies)):
            result = await wrk.run_wrk(binary, port, path, bodies, CONNECTIONS, SECONDS, WARMUP)
            if result.not_ok:
                raise AssertionError(f"wrk: {result.not_ok} responses of {name} were not 2xx")
            _log(f"  round {round_ + 1} {name}, wrk: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
                 f"p99 {result.p99_ms:.2f} ms")
            out.append(result)
    return median_round(trivials), median_round(verifies)


def wrk_rows(measured: tuple[WrkResult, WrkResult] | None, command: str) -> list[Row]:
    """The rows of the wrk rounds (none without wrk)."""
    if measured is None:
        return []
    trivial, serve = measured
    return [
        Row("warm verify throughput, 32 conns, load by wrk (keyledger serve)", serve.rps, "req/s", trivial.rps,
            "trivial Litestar POST, wrk", f"≥ {TARGET_RATIO} × trivial", serve.rps >= TARGET_RATIO * trivial.rps,
            command),
        Row("warm verify p99, 32 conns, load by wrk (keyledger serve)", serve.p99_ms, "ms", trivial.p99_ms,
            "trivial Litestar POST p99, wrk", f"≤ {TARGET_P99_RATIO} × trivial",
            serve.p99_ms <= TARGET_P99_RATIO * trivial.p99_ms, command),
        Row("warm verify p50, 32 conns, load by wrk (keyledger serve)", serve.p50_ms, "ms", trivial.p50_ms,
            "trivial Litestar POST p50, wrk", "(diagnostic)", None, command),
    ]
