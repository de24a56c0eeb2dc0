"""A million keys per API process: memory per key, cold start, warm verify and revoke at 1M keys against 1k.

Two stores in one run. The small one holds the ``SMALL`` keys created through the API; the large one the same
keys plus ``KEYS - SMALL`` more, written by INSERT … SELECT into ``events`` and ``key_cache`` (a key.created each,
one or two access entries, an argon2id-shaped hash of random bytes: the shape of a real hash, the hash of
nothing) with every checkpoint moved past them, as if the projector had folded them. On each store one
``keyledger serve`` (relay, projector) and one ``--no-workers`` replica B, whose start is timed to /readyz
200 and whose worker's RSS is read once ready and warm: (RSS at 1M − RSS at 1k) / (keys added) is what a key
costs. Warm verify throughput of the same ``FEATURED`` keys on each B in alternating rounds gives the ratio.
Then ``GET /v1/keys`` pages on each B, as the root admin (every key) and as an organization's admin: the first
page (the sorted ids found) and the median of the next ``LIST_PAGES``. Then ``REVOKES`` revokes one after
another on the large store (a revoke returns once every replica holds it): with two API processes, then with
``PROCESSES``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg

from bench.client import build_request
from bench.common import BenchContext, BenchResult, Row, timed
from bench.http import Measured, describe, load
from bench.revocation import pct
from bench.servers import CHEAP_ARGON2, Api, Stack, private_stack, start_api

KEYS, SMALL, FEATURED, REVOKES, PROCESSES, ROUNDS = 1_000_000, 1_000, 16, 100, 8, 3
LIST_PAGES, LISTING_ORG = 10, "org-7"  # org-7 holds none of the SMALL keys, 200 of the added ones
READY_TIMEOUT = 600.0  # a start that misses its target is still measured
TARGET_BYTES, TARGET_START_S, TARGET_RATIO, TARGET_REVOKE_MS = 300, 10.0, 0.9, 50.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# key.created events for keys head+1.. head+N, built in Postgres (a Python loop takes minutes on 2 cores):
# ids of 12 hex digits (within the token alphabet), one or two access entries, an argon2id-shaped hash whose
# salt and digest are md5 bytes of the row number (the hash of nothing), a fifth with an expiry.
_EVENTS_SQL = """
INSERT INTO events (global_position, event_id, stream_id, version, type, data, metadata, recorded_at)
SELECT %(head)s + i, md5('event' || i)::uuid, key_id, 1, 'key.created', jsonb_strip_nulls(jsonb_build_object(
    'type', 'key.created', 'key_id', key_id, 'at', to_char(at, 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'name', 'service key ' || i, 'organization_id', 'org-' || (i %% 5000),
    'access', CASE WHEN i %% 2 = 0 THEN jsonb_build_array(jsonb_build_object(
                  'resource', 'website', 'id', 'site-' || (i %% 100000), 'scopes', jsonb_build_array('read:data')))
              ELSE jsonb_build_array(jsonb_build_object('resource', 'website', 'id', 'site-' || (i %% 100000),
                  'scopes', jsonb_build_array('read:data', 'write:data')),
                  jsonb_build_object('resource', 'error_data', 'scopes', jsonb_build_array('read:analytics'))) END,
    'expires_at', CASE WHEN i %% 5 = 0 THEN to_char(at + interval '365 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') END,
    'secret_hash', '$argon2id$v=19$m=65536,t=3,p=4$' || rtrim(encode(decode(md5('salt' || i), 'hex'), 'base64'), '=')
        || '$' || rtrim(encode(decode(md5('a' || i) || md5('b' || i), 'hex'), 'base64'), '='),
    'prefix', 'kl', 'start', 'kl_' || key_id || substr(md5('start' || i), 1, 4))),
    '{"actor": "bench-import"}'::jsonb, at
FROM (SELECT i, substr(md5('key' || i), 1, 12) AS key_id,
             (timestamp '2026-01-01' + i * interval '1 second') AS at
      FROM generate_series(1, %(count)s) AS i) AS g
"""
# what the projector would have folded: the event's fields, as version 1 of the key
_STATES_SQL = """
INSERT INTO key_cache (key_id, version, position, state)
SELECT stream_id, 1, global_position, (data - 'type' - 'at')
    || jsonb_build_object('version', 1, 'created_at', data->'at', 'updated_at', data->'at',
                          'expires_at', data->'expires_at')
FROM events WHERE global_position > %(head)s
"""


async def _head(conn: psycopg.AsyncConnection) -> int:
    row = await (await conn.execute("SELECT value FROM event_position")).fetchone()
    return int(row[0]) if row else 0


async def settled(url: str, timeout: float = 60.0) -> int:
    """Wait until the relay and the projector have handled every stored event; returns the head."""
    deadline = time.monotonic() + timeout
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            head = await _head(conn)
            cur = await conn.execute("SELECT count(*) FROM checkpoints WHERE name IN ('relay', 'key-cache') "
                                     "AND position >= %s", (head,))
            row = await cur.fetchone()
            if row and row[0] == 2:
                return head
            if time.monotonic() > deadline:
                raise AssertionError("the relay and projector did not reach the head")
            await asyncio.sleep(0.1)


async def add_keys(url: str, count: int) -> None:
    """Write ``count`` keys after the head into ``events`` and ``key_cache``; move every checkpoint past them."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        head = await _head(conn)
        async with conn.transaction():
            await conn.execute(_EVENTS_SQL, {"head": head, "count": count})
            await conn.execute(_STATES_SQL, {"head": head})
            await conn.execute("UPDATE event_position SET value = %s", (head + count,))
            await conn.execute("UPDATE checkpoints SET position = %s WHERE position >= %s", (head + count, head))
        await conn.execute("VACUUM (ANALYZE) events")
        await conn.execute("VACUUM (ANALYZE) key_cache")


def rss(api: Api) -> int:
    """Resident bytes of the API worker that holds the key cache."""
    return int(psutil.Process(api.worker_pid()).memory_info().rss)


async def started(stack: Stack, admin: Api) -> tuple[Api, float]:
    """A ``--no-workers`` replica and the seconds from its start to /readyz 200."""
    began = time.perf_counter()
    api = await start_api(stack, workers=False, env=_env(stack), admin_from=admin, ready_timeout=READY_TIMEOUT)
    return api, time.perf_counter() - began


async def _warm(api: Api, tokens: list[str]) -> list[bytes]:
    bodies = [{"key": token, "scope": "read:data"} for token in tokens]
    for body in bodies:
        answer = await api.client.json("POST", "/v1/verify", body, expect=200)
        assert answer["code"] == "VALID", answer
    return [build_request("POST", "/v1/verify", body) for body in bodies]


async def revokes(a: Api, key_ids: list[str]) -> list[float]:
    """Milliseconds of each revoke call, one after another."""
    out = []
    for key_id in key_ids:
        began = time.perf_counter()
        await a.client.json("POST", f"/v1/keys/{key_id}/revoke", {"reason": "bench"}, a.headers(), expect=200)
        out.append((time.perf_counter() - began) * 1000)
    return out


async def listing(api: Api, headers: dict[str, str]) -> tuple[float, float]:
    """Milliseconds of the first ``GET /v1/keys`` page of 50 and the median of up to ``LIST_PAGES`` more,
    following ``next_cursor``."""
    times: list[float] = []
    cursor: str | None = None
    for _ in range(LIST_PAGES + 1):
        began = time.perf_counter()
        page = await api.client.json("GET", "/v1/keys?limit=50" + (f"&cursor={cursor}" if cursor else ""),
                                     None, headers, expect=200)
        times.append((time.perf_counter() - began) * 1000)
        if (cursor := page["next_cursor"]) is None:
            break
    return times[0], statistics.median(times[1:] or times)


async def organization_admin(a: Api, b: Api) -> dict[str, str]:
    """The headers of a new admin key of ``LISTING_ORG``, once replica ``b`` knows it."""
    key_id, token = await a.create_key("listing admin", scopes=("admin:apikeys",), organization_id=LISTING_ORG)
    headers = {"x-api-key": token}
    deadline = time.monotonic() + 30
    while (await b.client.request("GET", f"/v1/keys/{key_id}", None, headers))[0] != 200:  # not a listing
        if time.monotonic() > deadline:
            raise TimeoutError("the organization's admin key never reached the replica")
        await asyncio.sleep(0.05)
    return headers


class Side:
    """One store: its writer A, its replica B, B's start and memory, the keys made through the API."""

    def __init__(self, stack: Stack, a: Api, keys: list[tuple[str, str]]) -> None:
        self.stack, self.a, self.keys = stack, a, keys
        self.b: Api | None = None
        self.start_s, self.rss = 0.0, 0
        self.requests: list[bytes] = []
        self.rounds: list[Measured] = []
        self.lists: dict[str, tuple[float, float]] = {}  # "root" / "organization": (first page, median page) ms


def _env(stack: Stack) -> dict[str, str]:
    """Cheap argon2, and a replica roll of the store's own: the other store's replicas never hold its commands."""
    return {**CHEAP_ARGON2, "KEYLEDGER_REPLICAS_SUBJECT": f"klbench.{stack.settings.nats_stream}.replicas"}


async def side(stack: Stack, extra: int, running: list[Api]) -> Side:
    """Seed a store with SMALL keys through the API, add ``extra`` by COPY, start B on it (each process
    started is in ``running`` until it is stopped)."""
    a = await start_api(stack, env=_env(stack))
    running.append(a)
    keys = await a.create_keys(SMALL)
    await settled(stack.database_url)
    if extra:
        running.remove(a)
        await a.stop()
        with timed(f"write {extra:,} keys into events and key_cache", _log):
            await add_keys(stack.database_url, extra)
        a = await start_api(stack, env=_env(stack), admin_from=a, ready_timeout=READY_TIMEOUT)
        running.append(a)
    made = Side(stack, a, keys)
    made.b, made.start_s = await started(stack, a)
    running.append(made.b)
    made.requests = await _warm(made.b, [token for _, token in keys[:FEATURED]])
    return made


async def run(ctx: BenchContext) -> BenchResult:
    """Both stores side by side; alternating warm verify rounds; revokes with 2 and with PROCESSES processes."""
    running: list[Api] = []
    async with private_stack(ctx) as small_stack, private_stack(ctx) as large_stack:
        try:
            small = await side(small_stack, 0, running)
            large = await side(large_stack, KEYS - SMALL, running)
            _log(f"  B started in {small.start_s:.1f} s with {SMALL:,} keys, {large.start_s:.1f} s with {KEYS:,}")
            for round_ in range(ROUNDS):
                for name, one in (("1k", small), ("1M", large)):
                    assert one.b is not None
                    one.rounds.append(await load(one.b.port, one.b.worker_pid(), one.requests))
                    _log(describe(f"round {round_ + 1}, {name} keys", one.rounds[-1]))
            for one in (small, large):
                assert one.b is not None
                one.rss = rss(one.b)
            _log(f"  B's worker RSS: {small.rss / 2**20:.0f} MiB at 1k keys, {large.rss / 2**20:.0f} MiB at 1M")
            for name, one in (("1k", small), ("1M", large)):  # after the RSS: the sorted ids are the listing's
                assert one.b is not None
                one.lists["root"] = await listing(one.b, one.b.headers())
                one.lists["organization"] = await listing(one.b, await organization_admin(one.a, one.b))
                _log(f"  GET /v1/keys at {name} keys, first / median page ms: "
                     + ", ".join(f"{who} {first:.1f} / {median:.2f}" for who, (first, median) in one.lists.items()))
            revocable = [key_id for key_id, _ in large.keys[FEATURED:]]
            two = await revokes(large.a, revocable[:REVOKES])
            _log(f"  revoke with 2 processes: p50 {pct(two, 0.5):.1f} ms, p99 {pct(two, 0.99):.1f} ms")
            for replica, seconds in await asyncio.gather(*(started(large_stack, large.a)
                                                           for _ in range(PROCESSES - 2))):  # together: 2 cores
                running.append(replica)
                _log(f"  another replica ready in {seconds:.1f} s ({PROCESSES - 2} starting at once)")
            many = await revokes(large.a, revocable[REVOKES:2 * REVOKES])
            _log(f"  revoke with {PROCESSES} processes: p50 {pct(many, 0.5):.1f} ms, p99 {pct(many, 0.99):.1f} ms")
        finally:
            for api in reversed(running):
                await api.stop()
    return BenchResult(result_rows(small, large, two, many, ctx.command))


def result_rows(small: Side, large: Side, two: list[float], many: list[float], command: str) -> list[Row]:
    """The four targets and their diagnostics."""
    per_key = (large.rss - small.rss) / (KEYS - SMALL)
    ratios = [big.rps / little.rps for big, little in zip(large.rounds, small.rounds, strict=True)]
    ratio = sorted(ratios)[len(ratios) // 2]
    big_rps, small_rps = (sorted(r.rps for r in one.rounds)[len(one.rounds) // 2] for one in (large, small))
    p99_many, p99_two = pct(many, 0.99), pct(two, 0.99)
    return [
        Row(f"API process memory per key at {KEYS:,} keys (worker RSS growth / keys added)", per_key, "bytes",
            target=f"≤ {TARGET_BYTES} bytes", met=per_key <= TARGET_BYTES, command=command),
        Row(f"API worker RSS at {KEYS:,} keys", large.rss / 2**20, "MiB", small.rss / 2**20,
            f"RSS at {SMALL:,} keys", "(diagnostic)", command=command),
        Row(f"cold start to /readyz 200 at {KEYS:,} keys", large.start_s, "s", small.start_s,
            f"start at {SMALL:,} keys", f"≤ {TARGET_START_S:.0f} s", large.start_s <= TARGET_START_S, command),
        Row(f"warm verify throughput at {KEYS:,} keys, median rounds (the target judged on the median of the "
            f"{ROUNDS} alternating rounds' ratios: {', '.join(f'{r:.2f}' for r in ratios)})", big_rps, "req/s",
            small_rps, f"same at {SMALL:,} keys",
            f"≥ {TARGET_RATIO} × 1k keys", ratio >= TARGET_RATIO, command),
        Row(f"revoke call p99, {PROCESSES} API processes on one store, {KEYS:,} keys ({len(many)} revokes)",
            p99_many, "ms", p99_two, "2 processes, same store", f"≤ {TARGET_REVOKE_MS:.0f} ms",
            p99_many <= TARGET_REVOKE_MS, command),
        Row(f"revoke call p50, {PROCESSES} API processes", pct(many, 0.5), "ms", pct(two, 0.5),
            "2 processes", "(diagnostic)", command=command),
        *(row for who, what in (("root", "every key"), ("organization", f"an organization's admin, {LISTING_ORG}"))
          for row in (
              Row(f"GET /v1/keys page of 50 at {KEYS:,} keys ({what}), median of the pages after the first",
                  large.lists[who][1], "ms", small.lists[who][1], f"same at {SMALL:,} keys", "(diagnostic)",
                  command=command),
              Row(f"GET /v1/keys first page at {KEYS:,} keys ({what}: the sorted ids found)", large.lists[who][0],
                  "ms", small.lists[who][0], f"same at {SMALL:,} keys", "(diagnostic)", command=command))),
    ]
