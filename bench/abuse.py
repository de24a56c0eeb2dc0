"""Abuse: warm verify latency with and without a flood of wrong secrets for a real key id.

DESIGN: argon2 work must be bounded so a flood of wrong secrets cannot starve valid traffic
(held to: warm verify p99 under the flood ≤ 1.25 × without it, measured in the same run).

``keyledger serve`` with production argon2 (t=3, 64 MiB). Valid traffic: warm verifies of
16 keys on 32 connections (closed loop, as in the ``http`` benchmark). The flood: wrong
secrets, each different and each with a valid checksum, for the key id of one of those 16
keys (another one each round, so every round starts with a fresh per-key failure count),
paced at ``FLOOD_RATE``/s on ``FLOOD_CONNECTIONS`` connections by a second load generator
process (more connections than the 16 pending argon2 checks allowed, so that bound is
reached). Phases alternate (no flood, flood) ``ROUNDS`` times; p99s are averaged.

Two servers, one after the other: the default per-key failure throttle
(``KEYLEDGER_KEY_FAILURE_LIMIT`` = 10 wrong secrets per key id and minute, then cold checks
stop), and the throttle effectively off (1,000,000), which leaves only the bound on pending
argon2 checks (``KEYLEDGER_ARGON2_MAX_PENDING`` = 16, over ``argon2_max_concurrency`` threads).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
from dataclasses import dataclass

from bench.client import build_request
from bench.common import BenchContext, BenchResult, Row
from bench.loadgen import LoadResult, LoadSpec, run_load
from bench.servers import PRODUCTION_ARGON2, Api, Stack, private_stack, start_api
from keyledger.domain import token

CONNECTIONS, WARMUP, SECONDS, ROUNDS, KEYS = 32, 1.0, 5.0, 2, 16
FLOOD_RATE, FLOOD_CONNECTIONS, TARGET_RATIO = 500.0, 64, 1.25
VARIANTS = {"default per-key failure throttle (10/min)": {},
            "failure throttle off (argon2 pending bound alone)": {"KEYLEDGER_KEY_FAILURE_LIMIT": "1000000"}}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def wrong_tokens(key_id: str, count: int) -> list[str]:
    """``count`` different well-formed tokens for ``key_id`` with random (wrong) secrets."""
    alphabet = token.ALPHABET
    return [token.format_token(token.DEFAULT_PREFIX, key_id, "".join(secrets.choice(alphabet) for _ in range(32)))
            for _ in range(count)]


@dataclass(frozen=True)
class Round:
    """One round: valid traffic alone, then valid traffic under the flood, and the flood itself."""

    quiet: LoadResult
    flooded: LoadResult
    flood: LoadResult


async def one_round(api: Api, valid: list[bytes], flood: list[bytes]) -> Round:
    """Valid load alone, then the same load while the flood runs (the flood starts first)."""
    spec = LoadSpec(port=api.port, requests=valid, connections=CONNECTIONS, warmup=WARMUP, duration=SECONDS,
                    expect=b'"valid":true', tally=b'"code":"')
    quiet = await run_load(spec)
    flood_spec = LoadSpec(port=api.port, requests=flood, connections=FLOOD_CONNECTIONS, rate=FLOOD_RATE,
                          warmup=0.5, duration=WARMUP + SECONDS + 1.0, tally=b'"code":"')
    flooding = asyncio.create_task(run_load(flood_spec))
    await asyncio.sleep(0.5)
    flooded = await run_load(spec)
    return Round(quiet, flooded, await flooding)


async def variant(stack: Stack, env: dict[str, str], admin_from: Api | None) -> tuple[list[Round], Api]:
    """A fresh server with ``env``; ROUNDS rounds."""
    api = await start_api(stack, env={**PRODUCTION_ARGON2, **env}, admin_from=admin_from)
    try:
        keys = await api.create_keys(KEYS)
        for _, secret in keys:
            assert await api.verify(secret) == "VALID"
        valid = [build_request("POST", "/v1/verify", {"key": secret, "scope": "read:data"}) for _, secret in keys]
        flood_count = int(FLOOD_RATE * (WARMUP + SECONDS + 2.0) * 1.2)
        rounds = []
        for round_ in range(ROUNDS):
            flood = [build_request("POST", "/v1/verify", {"key": wrong, "scope": "read:data"})
                     for wrong in wrong_tokens(keys[round_][0], flood_count)]
            rounds.append(await one_round(api, valid, flood))
            r = rounds[-1]
            _log(f"  quiet p99 {r.quiet.p99_ms:.1f} ms ({r.quiet.rps:,.0f}/s); flooded p99 {r.flooded.p99_ms:.1f} ms "
                 f"({r.flooded.rps:,.0f}/s, {r.flooded.tallies}); flood {r.flood.rps:,.0f}/s {r.flood.tallies}")
            if r.quiet.good != r.quiet.completed or r.flooded.good != r.flooded.completed:
                raise AssertionError(f"valid traffic refused: {r.quiet.tallies} {r.flooded.tallies}")
        return rounds, api
    finally:
        await api.stop()


def mean_p99(results: list[LoadResult]) -> float:
    """The mean of the rounds' p99s."""
    return statistics.mean(r.p99_ms for r in results)


def variant_rows(name: str, rounds: list[Round], command: str) -> list[Row]:
    """p99 under the flood vs without it, and the flood's answers."""
    quiet, flooded = mean_p99([r.quiet for r in rounds]), mean_p99([r.flooded for r in rounds])
    flood_rps = statistics.mean(r.flood.rps for r in rounds)
    quiet_rps = statistics.mean(r.quiet.rps for r in rounds)
    flooded_rps = statistics.mean(r.flooded.rps for r in rounds)
    return [
        Row(f"warm verify p99 under a {flood_rps:,.0f}/s wrong-secret flood — {name}", flooded, "ms", quiet,
            "same load, no flood", f"≤ {TARGET_RATIO:g} × no flood", flooded <= TARGET_RATIO * quiet, command),
        Row(f"warm verify throughput under the flood — {name}", flooded_rps, "req/s", quiet_rps,
            "same load, no flood", "(diagnostic)", None, command),
    ]


def section(results: dict[str, list[Round]]) -> str:
    """Every round, with the flood's answer codes (NOT_FOUND = an argon2 check ran)."""
    lines = ["### Abuse: every round (valid: 32 connections, 1 s warm-up + 5 s; flood paced at "
             f"{FLOOD_RATE:,.0f}/s on {FLOOD_CONNECTIONS} connections)", "",
             "| variant | round | no flood: req/s, p50, p99 ms | flood: req/s, p50, p99 ms | flood answers |",
             "| --- | ---: | --- | --- | --- |"]
    for name, rounds in results.items():
        for i, r in enumerate(rounds, 1):
            answers = ", ".join(f"{code} {n:,}" for code, n in sorted(r.flood.tallies.items()))
            lines.append(f"| {name} | {i} | {r.quiet.rps:,.0f}, {r.quiet.p50_ms:.2f}, {r.quiet.p99_ms:.2f} | "
                         f"{r.flooded.rps:,.0f}, {r.flooded.p50_ms:.2f}, {r.flooded.p99_ms:.2f} | {answers} |")
    return "\n".join(lines)


async def run(ctx: BenchContext) -> BenchResult:
    """Both variants on one fresh database, one server after the other."""
    results: dict[str, list[Round]] = {}
    async with private_stack(ctx) as stack:
        admin: Api | None = None
        for name, env in VARIANTS.items():
            _log(f"  {name}:")
            results[name], admin = await variant(stack, env, admin)
    rows = [row for name, rounds in results.items() for row in variant_rows(name, rounds, ctx.command)]
    return BenchResult(rows, [section(results)])
