"""The client side: the in-process verifier, and the ASGI middleware's cost per request.

``inprocess``: an ``InProcessVerifier`` (live key cache, verifier, rate limiter, usage events: the whole
path) in the benchmark's own process beside a ``keyledger serve``. Warm throughput: ``WARM_LOOPS``
verifies by ``CONCURRENT`` tasks on one core over ``KEYS`` keys already verified once, each giving the event
loop a turn every ``YIELD_EVERY`` (so the usage events are published, and that work counts too); then a few
one at a time, each waiting for its own usage event's acknowledgement (the durable default). Revocation: for each of
``REVOCATIONS`` keys, create it on the API, verify it in-process until VALID, revoke it on the API, then
verify in-process (yielding to the event loop between tries, so the bus can be read) until REVOKED;
measured from the moment the revoke response has been read.

``middleware``: one small GET endpoint (``bench.protected_app``) served by granian like ``keyledger
serve``, plain, behind ``KeyledgerMiddleware`` asking keyledger over HTTP (the SDK's transport, then httpx
as before: the A/B), and behind the middleware with an in-process verifier; then ``examples/protected_service.py``
itself (Litestar plugin and guard over HTTP; its client on httpx) and its endpoint unprotected. The same load
(``CONNECTIONS`` keep-alive connections) against each, one after another in the same run. The difference of
the median latencies is the middleware's cost per request. Beside the throughput, the CPU every process on
the machine spent per response (load generator, app, keyledger with its Postgres and NATS), which does
not depend on what else runs: the unprotected CPU per request over the protected one is a floor of the
throughput ratio on an idle machine (where the unprotected app is held to its one worker's core).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from bench.client import Client, build_request
from bench.common import BenchContext, BenchResult, Row
from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.protected_app import MODES
from bench.revocation import pct
from bench.servers import ROOT, Api, Stack, listening_pids, private_stack, stack_cpu_seconds, start_api
from keyledger.services.inprocess.verifier import InProcessVerifier
from tests.support.server import free_port, stop_process

WARM_LOOPS, KEYS, REVOCATIONS = 200_000, 16, 200
TARGET_RATE, TARGET_P99_MS = 100_000, 50.0
CONNECTIONS, SECONDS, WARMUP = 8, 4.0, 1.0
TARGET_HTTP_RATIO = 0.3  # protected over HTTP ≥ 0.3 × the same service unprotected
EXAMPLE_PATH, EXAMPLE_ANSWER = "/websites/site-a/stats", b'"website":"site-a"'
YIELD_EVERY = 64  # warm verifies between two turns of the event loop
CONCURRENT, SEQUENTIAL_LOOPS = 32, 2_000  # verifies in flight at once; the diagnostic one at a time


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def local_verifier(stack: Stack, name: str = "bench") -> InProcessVerifier:
    """An in-process verifier on the benchmark's database and streams."""
    return InProcessVerifier(nats_url=stack.nats_url, database_url=stack.database_url, settings=stack.settings,
                             name=name, spool_dir=stack.work_dir / f"spool-{name}")


async def valid_soon(local: InProcessVerifier, secret: str, timeout: float = 10.0) -> None:
    """Verify until VALID (the key reached the cache; its secret is remembered)."""
    deadline = time.monotonic() + timeout
    while not (await local.verify(secret, "read:data")).valid:
        if time.monotonic() > deadline:
            raise AssertionError("a new key never became VALID in-process")
        await asyncio.sleep(0.001)


async def warm_rate(local: InProcessVerifier, secrets: list[str], loops: int = WARM_LOOPS,
                    concurrent: int = CONCURRENT) -> tuple[float, float]:
    """Warm in-process verifies per CPU second of this process (publishing their usage events included: "on
    one core", whatever else shares the machine), and per wall-clock second: ``concurrent`` tasks verifying one
    after another, as a service serving that many requests at once does (a verify answers once its usage event
    is in JetStream, by default, so the events of the verifies in flight share one publish)."""
    for secret in secrets:
        await valid_soon(local, secret)
    each = loops // concurrent

    async def serve(first: int) -> None:
        for i in range(each):
            await local.verify(secrets[(first + i) % len(secrets)], "read:data")
            if i % YIELD_EVERY == 0:  # as a service does between requests: the usage events get published
                await asyncio.sleep(0)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(serve(task) for task in range(concurrent)))
    return each * concurrent / (time.process_time() - cpu), each * concurrent / (time.perf_counter() - started)


async def revocations(api: Api, local: InProcessVerifier, count: int) -> list[float]:
    """ms from each revoke response until the in-process verifier answers REVOKED."""
    visible: list[float] = []
    for i in range(count):
        key_id, secret = await api.create_key(f"revocation {i}")
        await valid_soon(local, secret)
        await api.client.json("POST", f"/v1/keys/{key_id}/revoke", {"reason": "bench"}, api.headers(), expect=200)
        revoked = time.perf_counter()
        while (await local.verify(secret, "read:data")).code != "REVOKED":
            await asyncio.sleep(0.0005)  # let the bus and the store follower run (the resolution: 0.5 ms)
            if time.perf_counter() - revoked > 10:
                raise AssertionError("the revocation never reached the in-process verifier")
        visible.append((time.perf_counter() - revoked) * 1000)
    return visible


async def run_inprocess(ctx: BenchContext) -> BenchResult:
    """Warm throughput and revocation propagation of the in-process verifier."""
    async with private_stack(ctx) as stack:
        api = await start_api(stack, workers=True)
        try:
            secrets = [secret for _, secret in await api.create_keys(KEYS)]
            async with local_verifier(stack) as local:
                rate, wall_rate = await warm_rate(local, secrets)
                _log(f"  in-process warm verify, {CONCURRENT} at a time: {rate:,.0f}/s of CPU ({1e6 / rate:.1f} µs), "
                     f"{wall_rate:,.0f}/s of wall time")
                alone, _ = await warm_rate(local, secrets, SEQUENTIAL_LOOPS, 1)
                _log(f"  in-process warm verify, one at a time: {alone:,.0f}/s of CPU ({1e6 / alone:.1f} µs)")
                visible = await revocations(api, local, REVOCATIONS)
                _log(f"  in-process revocation: p50 {pct(visible, 0.5):.1f} ms, p99 {pct(visible, 0.99):.1f} ms")
        finally:
            await api.stop()
    p99 = pct(visible, 0.99)
    return BenchResult([
        Row(f"in-process verifier, warm (cache, verifier, rate limit, usage event), {CONCURRENT} at a time, per CPU "
            "second", rate, "verifies/s", target=f"≥ {TARGET_RATE:,}/s", met=rate >= TARGET_RATE, command=ctx.command),
        Row("in-process verifier, warm, one at a time (each waits for its own usage event's acknowledgement), per CPU "
            "second", alone, "verifies/s", target="(diagnostic)", command=ctx.command),
        Row("in-process verifier, warm, per wall-clock second (the machine's other work shares the cores)", wall_rate,
            "verifies/s", target="(diagnostic)", command=ctx.command),
        Row(f"revocation visible in the in-process verifier, p99 of {len(visible)}", p99, "ms",
            target=f"≤ {TARGET_P99_MS:.0f} ms", met=p99 <= TARGET_P99_MS, command=ctx.command),
        Row("revocation visible in the in-process verifier, p50", pct(visible, 0.5), "ms", target="(diagnostic)",
            command=ctx.command),
    ])


class AppServer:
    """``python -m bench.protected_app PORT MODE`` as a subprocess."""

    def __init__(self, mode: str, env: dict[str, str]) -> None:
        self.port, self.mode = free_port(), mode
        self.process = subprocess.Popen([sys.executable, "-m", "bench.protected_app", str(self.port), mode], cwd=ROOT,
                                        env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    @property
    def path(self) -> str:
        """The endpoint the load asks for."""
        return EXAMPLE_PATH if self.mode.startswith("example") else "/data"

    async def wait_ready(self, secret: str, timeout: float = 30.0) -> AppServer:
        """Until the endpoint lets ``secret`` through."""
        deadline, client = time.monotonic() + timeout, Client("127.0.0.1", self.port)
        try:
            while True:
                try:
                    status, _ = await client.request("GET", self.path, headers={"x-api-key": secret})
                    if status == 200:
                        return self
                except (OSError, asyncio.IncompleteReadError):
                    await client.close()
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the {self.mode} app did not start")
                await asyncio.sleep(0.1)
        finally:
            await client.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        stop_process(self.process, grace=10)


class Measured(NamedTuple):
    """One mode's load, and the CPU every process on the machine spent per response: the load generator,
    the app, and keyledger (API, relay, projector, audit sink, Postgres, NATS), whatever the mode."""

    load: LoadResult
    cpu_us: float


async def load(mode: str, env: dict[str, str], secret: str, keyledger: dict[str, list[int]]) -> Measured:
    """The same load against the app of ``mode``; ``keyledger``: the pids of keyledger's processes, by part."""
    server = await AppServer(mode, env).wait_ready(secret)
    try:
        spec = LoadSpec(port=server.port, requests=[build_request("GET", server.path, headers={"x-api-key": secret})],
                        connections=CONNECTIONS, duration=SECONDS, warmup=WARMUP,
                        expect=EXAMPLE_ANSWER if mode.startswith("example") else b'"ok":true')
        groups = {"app": [server.process.pid], **keyledger}
        before = {name: stack_cpu_seconds(pids) for name, pids in groups.items()}
        result = await run_load(spec)
        spent = {name: stack_cpu_seconds(pids) - before[name] for name, pids in groups.items()}
        spent["load generator"] = result.loadgen_cpu * (WARMUP + SECONDS)
        per = {name: seconds * 1e6 / max(result.total, 1) for name, seconds in spent.items()}
        _log(f"  {mode}: CPU µs per request: " + ", ".join(f"{name} {us:.0f}" for name, us in per.items()))
        return Measured(result, sum(per.values()))
    finally:
        server.stop()


def _ratio_rows(name: str, measured: Measured, baseline: Measured, baseline_what: str, target: bool,
                command: str) -> list[Row]:
    """Throughput against the unprotected app's, and the CPU all processes spend per request (robust to the
    machine's other work). The CPU ratio is a floor of the throughput ratio on an idle machine: the
    unprotected app is held to its one worker's core, the protected one spreads over both."""
    goal = f"≥ {TARGET_HTTP_RATIO} × without it" if target else "(diagnostic)"
    return [Row(f"{name}: throughput", measured.load.rps, "req/s", baseline.load.rps, baseline_what, goal,
                measured.load.rps >= TARGET_HTTP_RATIO * baseline.load.rps if target else None, command),
            Row(f"{name}: CPU per request, all processes (load generator, app, keyledger, Postgres, NATS)",
                measured.cpu_us, "µs", baseline.cpu_us, baseline_what,
                "(diagnostic: baseline ÷ value is a floor of the idle throughput ratio)", None, command)]


async def run_middleware(ctx: BenchContext) -> BenchResult:
    """The app plain, behind the middleware over HTTP and behind it in-process: same load, same run."""
    async with private_stack(ctx) as stack:
        api = await start_api(stack, workers=True)
        try:
            _, secret = await api.create_key("middleware")
            s = stack.settings
            env = {"KEYLEDGER_URL": f"http://127.0.0.1:{api.port}",
                   "KEYLEDGER_VERIFY_CREDENTIAL": str(api.server.verify_credential),
                   "DATABASE_URL": stack.database_url, "NATS_URL": stack.nats_url,
                   "KEYLEDGER_NATS_STREAM": s.nats_stream,
                   "KEYLEDGER_NATS_SUBJECT_PREFIX": s.nats_subject_prefix, "KEYLEDGER_USAGE_STREAM": s.usage_stream,
                   "KEYLEDGER_USAGE_SUBJECT": s.usage_subject, "KEYLEDGER_REPLICAS_SUBJECT": s.replicas_subject,
                   "KEYLEDGER_SPOOL_DIR": str(Path(stack.work_dir) / "app")}
            keyledger = {"keyledger API": api.worker_pids(), "relay, projector, audit sink": api.background_pids(),
                         "Postgres, NATS": listening_pids(stack.database_url, stack.nats_url)}
            results = {mode: await load(mode, env, secret, keyledger) for mode in MODES}
        finally:
            await api.stop()
    for mode, (r, cpu) in results.items():
        _log(f"  app {mode}: {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms "
             f"({r.good}/{r.completed}), {cpu:.0f} µs CPU per request")
    plain = results["plain"]
    rows = [Row(f"GET through the app, {CONNECTIONS} conns: plain", plain.load.rps, "req/s", target="(baseline)",
                command=ctx.command)]
    for mode, what in (("http", "middleware asking keyledger over HTTP (the SDK's transport)"),
                       ("http-httpx", "middleware asking keyledger over HTTP on httpx (before)"),
                       ("inprocess", "middleware, in-process")):
        measured = results[mode]
        rows += [*_ratio_rows(f"GET through the app: {what}", measured, plain, "the same app without it",
                              mode == "http", ctx.command),
                 Row(f"middleware cost per request ({what}): p50 latency difference",
                     measured.load.p50_ms - plain.load.p50_ms, "ms", target="(diagnostic)", command=ctx.command)]
    unprotected = results["example-plain"]
    rows.append(Row(f"GET {EXAMPLE_PATH}, {CONNECTIONS} conns: examples/protected_service.py unprotected",
                    unprotected.load.rps, "req/s", target="(baseline)", command=ctx.command))
    for mode, what in (("example", "the SDK's transport"), ("example-httpx", "its client on httpx (before)")):
        rows += _ratio_rows(f"examples/protected_service.py (Litestar guard, keyledger over HTTP), {what}",
                            results[mode], unprotected, "the same service unprotected", mode == "example",
                            ctx.command)
    return BenchResult(rows)
