"""Command throughput through the HTTP API: create, change access (PATCH) and revoke.

``keyledger serve`` (relay, projector and audit sink in-process) with cheap argon2
(t=1, 1 MiB: creating a key hashes its secret once; the admin key's own verify is warm).
The admin key's rate limit is 10,000,000/min, so the limiter never refuses. Each command
loads the key's stream from Postgres, decides, appends (optimistic concurrency), applies
the events to the live cache, answers; the relay then publishes them to JetStream.

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
from bench.servers import BIG_LIMIT, Api, cpu_seconds, private_stack, start_api

CONNECTIONS, CREATE_KEYS, SECONDS = 8, 2000, 5.0
SCOPE_SETS = (["read:data"], ["read:data", "read:analytics"])


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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

    cpu, started = cpu_seconds(api.worker_pid()), time.perf_counter()
    parts = await asyncio.gather(*(make(c, CREATE_KEYS // CONNECTIONS) for c in clients))
    seconds, cpu = time.perf_counter() - started, cpu_seconds(api.worker_pid()) - cpu
    ids = [key_id for part in parts for key_id in part]
    _log(f"  create: {refused} refusals by the per-caller argon2 quota, retried")
    return ids, len(ids) / seconds, cpu / len(ids) * 1e6


async def loaded(api: Api, name: str, spec: LoadSpec) -> tuple[LoadResult, float]:
    """Run ``spec`` against the API; (result, server CPU µs per response). Every answer must be 200."""
    cpu = cpu_seconds(api.worker_pid())
    async with profiled(api.worker_pid(), f"commands-{name}", spec.duration if not spec.count else 3):
        result = await run_load(spec)
    cpu = cpu_seconds(api.worker_pid()) - cpu
    if result.good != result.completed or result.lost_connections:
        raise AssertionError(f"{name}: {result.statuses} {result.bad_sample}")
    _log(f"  {name}: {result.rps:,.0f}/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
         f"server CPU {cpu / max(result.total, 1) * 1e6:.0f} µs/command")
    return result, cpu / max(result.total, 1) * 1e6


async def run(ctx: BenchContext) -> BenchResult:
    """Create keys, PATCH them for SECONDS, then revoke each once."""
    async with private_stack(ctx) as stack:
        api = await start_api(stack)
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
        finally:
            await api.stop()
    cmd = ctx.command
    section = "\n".join([
        f"### Commands through the HTTP API ({CONNECTIONS} connections, `keyledger serve`)", "",
        "Server CPU = user + system seconds of the granian worker process (all threads, including the "
        "in-process relay, projector and audit sink that carry each command's events on) per command; "
        "Postgres' own CPU is not in it.", "",
        "| command | commands/s | p50 ms | p99 ms | server CPU µs/command |", "| --- | ---: | ---: | ---: | ---: |",
        f"| create (cheap argon2) | {create_rate:,.0f} | — | — | {create_cpu:,.0f} |",
        f"| change access (PATCH) | {patch.rps:,.0f} | {patch.p50_ms:.2f} | {patch.p99_ms:.2f} | {patch_cpu:,.0f} |",
        f"| revoke | {revoke.rps:,.0f} | {revoke.p50_ms:.2f} | {revoke.p99_ms:.2f} | {revoke_cpu:,.0f} |"])
    return BenchResult([
        Row(f"create key via HTTP, {CONNECTIONS} conns (cheap argon2 hash)", create_rate, "commands/s",
            target="(diagnostic)", command=cmd),
        Row(f"change access (PATCH) via HTTP, {CONNECTIONS} conns", patch.rps, "commands/s", target="(diagnostic)",
            command=cmd),
        Row("change access (PATCH) p99", patch.p99_ms, "ms", target="(diagnostic)", command=cmd),
        Row(f"revoke via HTTP, {CONNECTIONS} conns, {len(ids):,} keys once each", revoke.rps, "commands/s",
            target="(diagnostic)", command=cmd),
        Row("revoke p99", revoke.p99_ms, "ms", target="(diagnostic)", command=cmd),
    ], [section])
