"""Command throughput through the HTTP API: create, change access (PATCH) and revoke.

``keyledger serve --workers 2``: two API processes on one store, each a replica of the other, so every
command waits until the other holds its events (the replica barrier). The same phases run a second time
on a fresh ``serve --workers 2`` with ``KEYLEDGER_BENCH_NO_BARRIER=1`` (a switch for this benchmark only:
commands return without waiting for the other replica), the baseline the barrier's cost is measured
against in the same run. Cheap argon2
(t=1, 1 MiB: creating a key hashes its secret once; the admin key's own verify is warm).
The admin key's rate limit is 10,000,000/min, so the limiter never refuses. Each command
decides on the key's state in the live cache, appends (optimistic concurrency), applies the
events to the live cache, nudges the other replica and waits for it to announce them, answers;
the relay then publishes them to JetStream. The server CPU of each phase is the API workers';
the log line also gives that of ``serve``'s whole process tree (relay, projector, audit sink too).

- create: ``CREATE_KEYS`` keys over ``CONNECTIONS`` connections of the benchmark's own client
  (the ids are needed later);
- change access: ``bench.loadgen``, ``CONNECTIONS`` connections, ``SECONDS`` s, PATCH bodies
  round-robin over the keys, alternating two scope sets so every PATCH changes the key;
- revoke: ``bench.loadgen``, each key revoked exactly once (count-bounded).
"""

from __future__ import annotations

import asyncio
import sys
import time

from bench.client import Client, HttpError, build_request
from bench.common import BenchContext, BenchResult, Row
from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.pyspy import profiled
from bench.servers import BIG_LIMIT, Api, Stack, cpu_seconds, private_stack, stack_cpu_seconds, start_api

CONNECTIONS, CREATE_KEYS, SECONDS, PROCESSES = 8, 2000, 5.0, 2
TARGET_RATE, TARGET_RATIO, TARGET_P99_MS = 900, 0.75, 30  # issue 26, target 3
NO_BARRIER = {"KEYLEDGER_BENCH_NO_BARRIER": "1"}  # the baseline: commands do not wait for the other replica
SCOPE_SETS = (["read:data"], ["read:data", "read:analytics"])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def api_cpu(api: Api) -> float:
    """CPU seconds of every API worker process of ``api`` so far."""
    return sum(cpu_seconds(pid) for pid in api.worker_pids())


async def create(api: Api) -> tuple[list[str], float, float]:
    """(key ids, creates/s, server CPU µs per create) over CONNECTIONS connections."""
    clients = [Client("127.0.0.1", api.port) for _ in range(CONNECTIONS)]
    body = {"name": "bench command", "scopes": ["read:data"], "rate_limit": BIG_LIMIT}

    refused = 0

    async def one(client: Client) -> str:
        """One create; a 429 (one caller may have at most a quarter of the argon2 queue: 4 of 8 connections
        hashing at once) is retried, as a client honouring it would."""
        nonlocal refused
        while True:
            try:
                return str((await client.json("POST", "/v1/keys", body, api.headers(), expect=201))["id"])
            except HttpError as exc:
                if "HTTP 429" not in str(exc):
                    raise
                refused += 1
                await asyncio.sleep(0.002)

    async def make(client: Client, count: int) -> list[str]:
        ids = [await one(client) for _ in range(count)]
        await client.close()
        return ids

    cpu, started = api_cpu(api), time.perf_counter()
    parts = await asyncio.gather(*(make(c, CREATE_KEYS // CONNECTIONS) for c in clients))
    seconds, cpu = time.perf_counter() - started, api_cpu(api) - cpu
    ids = [key_id for part in parts for key_id in part]
    _log(f"  create: {refused} refusals by the per-caller argon2 quota, retried")
    return ids, len(ids) / seconds, cpu / len(ids) * 1e6


async def loaded(api: Api, name: str, spec: LoadSpec) -> tuple[LoadResult, float]:
    """Run ``spec`` against the API; (result, server CPU µs per response). Every answer must be 200. Also
    logs the CPU of the whole ``serve`` tree (API workers, relay, projector, audit sink) per response."""
    cpu, tree = api_cpu(api), stack_cpu_seconds([api.server.process.pid])
    async with profiled(api.worker_pid(), f"commands-{name}", spec.duration if not spec.count else 3):
        result = await run_load(spec)
    cpu, tree = api_cpu(api) - cpu, stack_cpu_seconds([api.server.process.pid]) - tree
    if result.good != result.completed or result.lost_connections:
        raise AssertionError(f"{name}: {result.statuses} {result.bad_sample}")
    _log(f"  {name}: {result.rps:,.0f}/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
         f"server CPU {cpu / max(result.total, 1) * 1e6:.0f} µs/command "
         f"(serve's whole tree {tree / max(result.total, 1) * 1e6:.0f} µs)")
    return result, cpu / max(result.total, 1) * 1e6


class Phases:
    """One configuration's figures: creates, PATCHes for SECONDS, each key revoked once."""

    def __init__(self, create_rate: float, create_cpu: float, patch: LoadResult, patch_cpu: float,
                 revoke: LoadResult, revoke_cpu: float, keys: int) -> None:
        self.create_rate, self.create_cpu, self.keys = create_rate, create_cpu, keys
        self.patch, self.patch_cpu, self.revoke, self.revoke_cpu = patch, patch_cpu, revoke, revoke_cpu

    def lines(self, label: str) -> list[str]:
        """This configuration's table lines."""
        return [
            f"| {label}: create (cheap argon2) | {self.create_rate:,.0f} | — | — | {self.create_cpu:,.0f} |",
            f"| {label}: change access (PATCH) | {self.patch.rps:,.0f} | {self.patch.p50_ms:.2f} | "
            f"{self.patch.p99_ms:.2f} | {self.patch_cpu:,.0f} |",
            f"| {label}: revoke | {self.revoke.rps:,.0f} | {self.revoke.p50_ms:.2f} | {self.revoke.p99_ms:.2f} | "
            f"{self.revoke_cpu:,.0f} |"]


async def phases(stack: Stack, label: str, env: dict[str, str] | None = None,
                 admin_from: Api | None = None) -> tuple[Phases, Api]:
    """Start ``serve --workers PROCESSES`` with ``env`` (the admin key of ``admin_from``'s, if given: the store
    bootstraps once), create keys, PATCH them for SECONDS, revoke each once; the figures and the stopped API."""
    _log(f"  {label}:")
    api = await start_api(stack, processes=PROCESSES, env=env, admin_from=admin_from)
    try:
        ids, create_rate, create_cpu = await create(api)
        _log(f"  create: {create_rate:,.0f}/s, server CPU {create_cpu:.0f} µs/command")
        patches = [build_request("PATCH", f"/v1/keys/{key_id}", {"scopes": scopes}, api.headers())
                   for scopes in SCOPE_SETS for key_id in ids]
        patch, patch_cpu = await loaded(api, "change access", LoadSpec(
            port=api.port, requests=patches, connections=CONNECTIONS, warmup=1.0, duration=SECONDS,
            expect=b'"version"'))
        revokes = [build_request("POST", f"/v1/keys/{key_id}/revoke", {"reason": "bench"}, api.headers())
                   for key_id in ids]
        revoke, revoke_cpu = await loaded(api, "revoke", LoadSpec(
            port=api.port, requests=revokes, connections=CONNECTIONS, count=len(revokes),
            expect=b'"revoked"'))
    except Exception:
        _log(api.server.log()[-4000:])  # why the server failed the phase
        raise
    finally:
        await api.stop()
    return Phases(create_rate, create_cpu, patch, patch_cpu, revoke, revoke_cpu, len(ids)), api


async def run(ctx: BenchContext) -> BenchResult:
    """With the barrier (two replicas), then the no-barrier baseline on a fresh pair of processes."""
    async with private_stack(ctx) as stack:
        barrier, first = await phases(stack, "barrier")
        free, _ = await phases(stack, "no barrier (baseline)", NO_BARRIER, admin_from=first)
    cmd = ctx.command
    section = "\n".join([
        f"### Commands through the HTTP API ({CONNECTIONS} connections, `keyledger serve --workers {PROCESSES}`)",
        "",
        f"{PROCESSES} API processes on one store: with the barrier a command returns once the other replica holds "
        "its events; the baseline (`KEYLEDGER_BENCH_NO_BARRIER=1`, a switch for this benchmark only) returns "
        "without waiting. Server CPU = user + system seconds of the API worker processes (all threads) per "
        "command; the relay, projector, audit sink and Postgres are not in it.", "",
        "| command | commands/s | p50 ms | p99 ms | server CPU µs/command |", "| --- | ---: | ---: | ---: | ---: |",
        *barrier.lines("barrier"), *free.lines("no barrier")])
    rows = [Row(f"create key via HTTP, {CONNECTIONS} conns (cheap argon2 hash)", barrier.create_rate, "commands/s",
                target="(diagnostic)", command=cmd)]
    for name, with_barrier, without in (
            (f"change access (PATCH) via HTTP, {CONNECTIONS} conns", barrier.patch, free.patch),
            (f"revoke via HTTP, {CONNECTIONS} conns, {barrier.keys:,} keys once each", barrier.revoke, free.revoke)):
        rows += [
            Row(f"{name}, {PROCESSES} API processes, barrier", with_barrier.rps, "commands/s",
                baseline=without.rps, baseline_what="the same without the barrier",
                target=f"≥ {TARGET_RATE:,}/s and ≥ {TARGET_RATIO} × baseline",
                met=with_barrier.rps >= TARGET_RATE and with_barrier.rps >= TARGET_RATIO * without.rps, command=cmd),
            Row(f"{name.split(' via')[0]} p99, barrier", with_barrier.p99_ms, "ms", target=f"≤ {TARGET_P99_MS} ms",
                met=with_barrier.p99_ms <= TARGET_P99_MS, command=cmd)]
    return BenchResult(rows, [section])
