"""The verify core in-process: ``services.verifier.Verifier.verify`` without HTTP, warm and cold.

Warm: a dict is the key lookup, every secret was verified once before (so its digest is
remembered), and ``verify`` runs N times in a loop on one core: token parse → cache →
digest → access decision. Where its time goes is measured part by part the same way.

Cold: the first verify of a fresh key with the service's default argon2 parameters
(argon2id, t=3, 64 MiB, p=1; through the Verifier's thread pool) against one raw
``PasswordHasher.verify`` with the same parameters, interleaved, medians.

App alone: the keyledger Litestar app (``create_app``, lifespan connected to this run's
Postgres and NATS) called directly through ASGI, no server, one request after another, against
``bench.trivial_app`` called the same way: the per-request Python cost of each app. Once API
only (like ``serve --no-workers``), once with relay, projector and audit sink in the same
event loop (like ``serve``), whose work on the usage events of these verifies then counts too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from argon2 import PasswordHasher, Type

from bench import asgi, trivial_app
from bench.client import build_request
from bench.common import BenchContext, BenchResult, Row
from bench.servers import private_stack
from keyledger.domain import token
from keyledger.domain.access import AccessEntry, check_access
from keyledger.domain.key import KeyState
from keyledger.services.clock import utc_now
from keyledger.services.config import Settings
from keyledger.services.hashing import SecretHasher
from keyledger.services.http.app import create_app
from keyledger.services.http.deps import components_of
from keyledger.services.verify.verifier import Verifier

WARM_LOOPS, PART_LOOPS, KEYS, COLD_KEYS, ASGI_REQUESTS = 200_000, 200_000, 16, 8, 20_000
SCOPE = "read:data"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def key_state(secret_hash: str, token_text: str) -> KeyState:
    """A warm key's state as the live cache holds it: ``read:data`` globally."""
    parsed, now = token.parse(token_text), datetime.now(UTC)
    return KeyState(key_id=parsed.key_id, version=1, name="bench", organization_id=None,
                    access=(AccessEntry(resource="global", scopes=(SCOPE,)),), expires_at=None,
                    secret_hash=secret_hash, prefix=parsed.prefix, start=parsed.start(), created_at=now,
                    updated_at=now)


async def keyring(hasher: SecretHasher, count: int) -> tuple[dict[str, KeyState], list[str]]:
    """``count`` fresh keys: the lookup dict and their tokens."""
    keys: dict[str, KeyState] = {}
    tokens: list[str] = []
    for _ in range(count):
        text = token.generate(secrets.token_bytes)
        state = key_state(await hasher.hash(text), text)
        keys[state.key_id] = state
        tokens.append(text)
    return keys, tokens


async def warm_rate(loops: int) -> float:
    """Warm verifies per second of ``Verifier.verify`` on one core (round-robin over KEYS keys)."""
    hasher = SecretHasher(Settings(argon2_time_cost=1, argon2_memory_kib=1024))  # only the warm-up pays it
    try:
        keys, tokens = await keyring(hasher, KEYS)
        verifier = Verifier(keys, hasher, token.DEFAULT_PREFIX, utc_now)
        for text in tokens:
            assert (await verifier.verify(text, SCOPE)).valid
        rounds = [tokens[i % len(tokens)] for i in range(loops)]
        started = time.perf_counter()
        for text in rounds:
            await verifier.verify(text, SCOPE)
        return loops / (time.perf_counter() - started)
    finally:
        hasher.close()


def per_call_us(fn: Callable[[], object], loops: int = PART_LOOPS) -> float:
    """Microseconds per call of ``fn`` in a tight loop."""
    started = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - started) / loops * 1e6


def parts() -> dict[str, float]:
    """µs of each step of a warm verify, measured alone."""
    text = token.generate(secrets.token_bytes)
    state, digest_key = key_state("$argon2id$stand-in", text), secrets.token_bytes(32)
    keys, now = {state.key_id: state}, utc_now()
    digest = hmac.new(digest_key, text.encode(), hashlib.sha256).digest()
    return {
        "token.parse (format, alphabet, CRC32 checksum)": per_call_us(lambda: token.parse(text)),
        "key lookup (dict.get)": per_call_us(lambda: keys.get(state.key_id)),
        "clock + status (utc_now, KeyState.status)": per_call_us(lambda: state.status(utc_now())),
        "HMAC-SHA256 digest of the token": per_call_us(
            lambda: hmac.new(digest_key, text.encode(), hashlib.sha256).digest()),
        "remembered-digest compare (hmac.compare_digest)": per_call_us(lambda: hmac.compare_digest(digest, digest)),
        "access decision (check_access)": per_call_us(lambda: check_access(state.access, SCOPE, None, None)),
        "accepted hashes (previous secret valid?)": per_call_us(lambda: state.previous_secret_valid(now)),
    }


async def cold(count: int) -> tuple[list[float], list[float]]:
    """(first-verify ms through the Verifier, raw argon2 verify ms), interleaved, production params."""
    defaults = Settings()
    hasher = SecretHasher(defaults)
    raw = PasswordHasher(time_cost=defaults.argon2_time_cost, memory_cost=defaults.argon2_memory_kib,
                         parallelism=defaults.argon2_parallelism, type=Type.ID)
    try:
        keys, tokens = await keyring(hasher, count)
        verifier = Verifier(keys, hasher, token.DEFAULT_PREFIX, utc_now)
        firsts, raws = [], []
        for text in tokens:
            secret_hash = keys[token.parse(text).key_id].secret_hash
            started = time.perf_counter()
            raw.verify(secret_hash, text)
            raws.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            assert (await verifier.verify(text, SCOPE)).valid
            firsts.append((time.perf_counter() - started) * 1000)
        return firsts, raws
    finally:
        hasher.close()


def section(rate: float, steps: dict[str, float]) -> str:
    """Where a warm in-process verify's time goes."""
    total = 1e6 / rate
    lines = [f"### Warm verify core in-process: {total:.1f} µs per verify ({rate:,.0f}/s on one core)", "",
             "Each step timed alone in a loop of the same kind; the rest is the Verifier's own Python "
             "(coroutine call, list building, Verdict struct).", "",
             "| step | µs | share |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {us:.2f} | {us / total:.0%} |" for name, us in steps.items()]
    rest = total - sum(steps.values())
    lines.append(f"| rest of Verifier.verify | {rest:.2f} | {rest / total:.0%} |")
    return "\n".join(lines)


def _body(request: bytes) -> bytes:
    return request.split(b"\r\n\r\n", 1)[1]


async def app_costs(ctx: BenchContext) -> dict[str, float]:
    """µs per request through ASGI: the trivial app, keyledger API only, keyledger with workers."""
    bodies: list[bytes] = []
    costs: dict[str, float] = {}
    async with private_stack(ctx) as stack:
        for name, workers in (("API only", False), ("with relay, projector, audit sink", True)):
            settings = Settings(database_url=stack.database_url, nats_url=stack.nats_url,
                                nats_stream=stack.settings.nats_stream,
                                nats_subject_prefix=stack.settings.nats_subject_prefix,
                                usage_stream=stack.settings.usage_stream, usage_subject=stack.settings.usage_subject,
                                replicas_subject=stack.settings.replicas_subject,
                                spool_dir=str(stack.work_dir / f"spool-{name[:3]}"), run_workers=workers,
                                argon2_time_cost=1, argon2_memory_kib=1024,
                                verify_open=True)  # as the HTTP benchmarks: no caller credential to check
            app = create_app(settings)
            async with asgi.lifespan(app):
                issued = [await components_of(app.state).keys.create("bench", access=(
                    AccessEntry(resource="global", scopes=(SCOPE,)),), rate_limit=10_000_000) for _ in range(KEYS)]
                bodies = [_body(build_request("POST", "/", {"key": i.token, "scope": SCOPE})) for i in issued]
                costs[f"keyledger {name}"] = await asgi.per_request_us(app, "/v1/verify", bodies, ASGI_REQUESTS,
                                                                       b'"valid":true')
    costs["trivial app"] = await asgi.per_request_us(trivial_app.create_app(), "/echo", bodies, ASGI_REQUESTS,
                                                     b'"valid":true')
    return costs


async def run(ctx: BenchContext) -> BenchResult:
    """Warm loop rate, its parts, cold vs raw argon2, then the apps through ASGI."""
    rate = await warm_rate(WARM_LOOPS)
    _log(f"  warm Verifier.verify: {rate:,.0f}/s ({1e6 / rate:.1f} µs)")
    steps = parts()
    firsts, raws = await cold(COLD_KEYS)
    first_ms, raw_ms = statistics.median(firsts), statistics.median(raws)
    _log(f"  cold: first verify {first_ms:.1f} ms, raw argon2 {raw_ms:.1f} ms (medians of {COLD_KEYS})")
    costs = await app_costs(ctx)
    _log("  through ASGI, no server: " + ", ".join(f"{k} {v:.0f} µs" for k, v in costs.items()))
    trivial = 1e6 / costs["trivial app"]
    return BenchResult([
        Row("verify core in-process, warm (parse → cache → digest → access)", rate, "verifies/s",
            target="(diagnostic)", command=ctx.command),
        Row("cold verify in-process (Verifier, fresh key, argon2 t=3, 64 MiB, p=1)", first_ms, "ms", raw_ms,
            "raw PasswordHasher.verify", "(diagnostic: ≈ 1, one argon2)", None, ctx.command),
        *(Row(f"warm verify through the app alone (ASGI call, no server), {name.removeprefix('keyledger ')}",
              1e6 / us, "req/s", trivial, "trivial app, same way", "(diagnostic)", None, ctx.command)
          for name, us in costs.items() if name != "trivial app"),
    ], [section(rate, steps)])
