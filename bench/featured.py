"""Warm verify of keys that carry an IP allowlist, usage credits and an owner with a shared rate limit and
credits, against plain keys, on one ``keyledger serve``, in alternating rounds: such a key must keep within
10 % of a plain key's throughput, with no Postgres round trip on the warm path (its networks are parsed once
per key state, its and its owner's credits spent from leases held in memory, the owner's limit counted like a
key's)."""

from __future__ import annotations

import sys

from bench.client import build_request
from bench.common import BenchContext, BenchResult, Row
from bench.http import ROUNDS, Measured, describe, load, median_round
from bench.servers import PRODUCTION_ARGON2, Api, private_stack, start_api

KEYS = 16
NETWORKS = ["198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]  # the client's is the second
CLIENT_IP = "203.0.113.7"
CREDITS = {"remaining": 10**12}  # never exhausted during the run
OWNER, OWNER_LIMIT = "bench-owner", 10_000_000  # requests per minute: never reached during the run
TARGET = 0.9


def _log(message: str) -> None:
    print(message, flush=True, file=sys.stderr)


async def _warm(api: Api, tokens: list[str]) -> list[bytes]:
    """Each token's first verify (argon2 once, credits leased); the load's requests, one per token."""
    bodies = [{"key": token, "scope": "read:data", "ip": CLIENT_IP} for token in tokens]
    for body in bodies:
        answer = await api.client.json("POST", "/v1/verify", body, expect=200)
        assert answer["code"] == "VALID", answer
    return [build_request("POST", "/v1/verify", body) for body in bodies]


async def run(ctx: BenchContext) -> BenchResult:
    """Plain keys and featured keys (allowlist, credits, an owner's limits) on one server, ``ROUNDS`` alternating
    rounds each."""
    async with private_stack(ctx) as stack:
        api = await start_api(stack, env=PRODUCTION_ARGON2)
        try:
            plain = await _warm(api, [token for _, token in await api.create_keys(KEYS)])
            await api.client.json("PUT", f"/v1/owners/{OWNER}", {"rate_limit": OWNER_LIMIT, "credits": CREDITS},
                                  api.headers(), expect=200)
            featured = await _warm(api, [token for _, token in await api.create_keys(
                KEYS, allowed_networks=NETWORKS, credits=CREDITS, owner_id=OWNER)])
            plains: list[Measured] = []
            featureds: list[Measured] = []
            for round_ in range(ROUNDS):
                plains.append(await load(api.port, api.worker_pid(), plain))
                _log(describe(f"round {round_ + 1} plain keys", plains[-1]))
                featureds.append(await load(api.port, api.worker_pid(), featured))
                _log(describe(f"round {round_ + 1} keys with an allowlist, credits and an owner", featureds[-1]))
        finally:
            await api.stop()
    base, with_features = median_round(plains), median_round(featureds)
    return BenchResult([
        Row("warm verify throughput, keys with an allowlist, credits and an owner's limits", with_features.rps,
            "req/s", base.rps, "plain keys, same server", f"≥ {TARGET} × plain keys",
            with_features.rps >= TARGET * base.rps, ctx.command),
        Row("server CPU per warm verify, keys with an allowlist, credits and an owner's limits",
            with_features.cpu_us, "µs", base.cpu_us, "plain keys, same server", "(diagnostic)", None, ctx.command),
    ])
