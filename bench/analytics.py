"""Usage analytics: ``GET /v1/analytics/usage`` over a year of hourly data on 10,000 keys (target: under 100 ms).

The keyledger app (``create_app``, lifespan on this run's Postgres and NATS, API only) is called in-process
through httpx's ASGI transport with an admin key: the time is the server's work for an answer (authentication,
handler, query, JSON of every bucket), no network. The 10,000 keys are bulk-loaded as events
(``bench.eventgen``, ~1,000 organizations). Their counts are written straight into the analytics tables, as
the audit sink would have left them after a year: each key was used in one hour of every sixth day (a scope of
five and a website of fifty, 1-20 valid requests and now and then a refused one), one "hot" key in every hour
of the year (four outcomes; two scopes on three websites); the organization and all-keys rollups (per hour and
per day) are summed from those per-key rows in SQL, so they agree with them. Each query is fetched ``ROUNDS``
times after a warm-up; the table gives the median and the 95th percentile.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from bench import asgi, eventgen
from bench.common import BenchContext, BenchResult, Row, timed
from bench.servers import private_stack
from keyledger.domain.access import AccessEntry
from keyledger.projections.usage_hourly import hour_of
from keyledger.services.config import Settings
from keyledger.services.http.app import create_app
from keyledger.services.http.deps import components_of

KEYS, ROUNDS, TARGET_MS, DAYS, EVERY = 10_000, 30, 100.0, 365, 6

# Per key n (1-based, in key id order): on day d with d % EVERY == n % EVERY, in hour (7n + d) % 24.
_KEYS = (" FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS k (key_id, n)"
         " CROSS JOIN generate_series(0, %(days)s - 1) AS d")
_USED = " WHERE d %% %(every)s = n %% %(every)s AND key_id <> %(hot)s"
_HOUR = "%(start)s + make_interval(days => d, hours => ((7 * n + d) %% 24)::int)"
_YEAR = ("generate_series(%(start)s, %(start)s + make_interval(days => %(days)s) - interval '1 hour', "
         "interval '1 hour') AS h")
_SEED = [
    f"INSERT INTO usage_hourly (key_id, hour, outcome, count) SELECT key_id, {_HOUR}, o.outcome, o.count {_KEYS}"
    " CROSS JOIN LATERAL (VALUES ('VALID', 1 + (n + d) %% 20), ('FORBIDDEN', 1)) AS o (outcome, count)"
    f"{_USED} AND (o.outcome = 'VALID' OR (n + d) %% 5 = 0)",
    f"INSERT INTO usage_hourly_requests (key_id, hour, scope, website_id, count) SELECT key_id, {_HOUR}, "
    "(ARRAY['read:data','write:data','read:analytics','track:events','read:export'])[1 + n %% 5], "
    f"'site-' || (n %% 50), 1 + (n + d) %% 20 + ((n + d) %% 5 = 0)::int {_KEYS}{_USED}",
    # the hot key: every hour of the year
    "INSERT INTO usage_hourly (key_id, hour, outcome, count) "
    f"SELECT %(hot)s, h, o, 1 + extract(hour FROM h)::int FROM {_YEAR} "
    "CROSS JOIN unnest(ARRAY['VALID','FORBIDDEN','RATE_LIMITED','NOT_FOUND']) AS o",
    "INSERT INTO usage_hourly_requests (key_id, hour, scope, website_id, count) "
    f"SELECT %(hot)s, h, s, w, 1 FROM {_YEAR} CROSS JOIN unnest(ARRAY['read:data','write:data']) AS s "
    "CROSS JOIN unnest(ARRAY['site-1','site-2','site-3']) AS w",
]
# The rollups, summed from the per-key rows (the key's organization from the key cache).
_ORGS = "CREATE TEMP TABLE bench_orgs AS SELECT * FROM unnest(%(keys)s::text[], %(orgs)s::text[]) AS o (key_id, org)"
_ROLLUP = ("INSERT INTO usage_rollups (subject, dimension, span, at, value, count) "
           "SELECT s.subject, %(dimension)s, 'hour', u.hour, u.value, sum(u.count) "
           "FROM (SELECT t.hour, t.{column} AS value, t.count, o.org FROM {table} t "
           "      JOIN bench_orgs o USING (key_id)) AS u "
           "CROSS JOIN LATERAL (VALUES ('all'), ('org:' || u.org)) AS s (subject) WHERE s.subject IS NOT NULL "
           "GROUP BY 1, 4, 5")
_DAYS = ("INSERT INTO usage_rollups (subject, dimension, span, at, value, count) "
         "SELECT subject, dimension, 'day', date_trunc('day', at, 'UTC'), value, sum(count) FROM usage_rollups "
         "WHERE span = 'hour' GROUP BY 1, 2, 4, 5")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def seed(database_url: str, keys: list[tuple[str, str | None]], hot: str, start: datetime) -> int:
    """Write a year of hourly counts of ``keys`` (id, organization) into the analytics tables; the rows written."""
    params = {"keys": [k for k, _ in keys], "orgs": [o for _, o in keys], "hot": hot, "start": start,
              "days": DAYS, "every": EVERY}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for statement in _SEED:
            await conn.execute(statement.encode(), params)
        await conn.execute(_ORGS.encode(), params)
        for dimension, table, column in (("outcome", "usage_hourly", "outcome"),
                                         ("scope", "usage_hourly_requests", "scope"),
                                         ("website", "usage_hourly_requests", "website_id")):
            await conn.execute(_ROLLUP.format(table=table, column=column).encode(), {"dimension": dimension})
        await conn.execute(_DAYS.encode())
        rows = 0
        for table in ("usage_hourly", "usage_hourly_requests", "usage_rollups"):
            await conn.execute(f"VACUUM (ANALYZE) {table}".encode())
            found = await (await conn.execute(f"SELECT count(*) FROM {table}".encode())).fetchone()
            rows += int(found[0]) if found else 0
    return rows


async def timings(client: httpx.AsyncClient, params: dict[str, str],
                  token: str) -> tuple[list[float], list[float], int]:
    """Milliseconds of ``ROUNDS`` answers to the query (after a warm-up that must count something), the CPU
    milliseconds this process spent on each (the app's work and the client's; Postgres' is not in it), and the
    number of (bucket, group) cells in the answer."""
    headers = {"x-api-key": token}
    first = await client.get("/v1/analytics/usage", params=params, headers=headers)
    if first.status_code != 200 or not first.json()["total"]:
        raise AssertionError(f"{params}: HTTP {first.status_code} {first.text[:300]!r}")
    cells = sum(len(bucket["counts"]) for bucket in first.json()["buckets"])
    times, cpu = [], []
    for _ in range(ROUNDS):
        started, used = time.perf_counter(), time.process_time()
        answer = await client.get("/v1/analytics/usage", params=params, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
        assert answer.status_code == 200, answer.text[:300]
    return times, cpu, cells


async def run(ctx: BenchContext) -> BenchResult:
    """Load 10,000 keys and a year of their hourly counts, then time the analytics queries."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    end = hour_of(datetime.now(UTC)) + timedelta(hours=1)
    start = end - timedelta(days=DAYS)
    async with private_stack(ctx) as stack:
        workload = eventgen.plan(KEYS, events_per_key=3, revoked_share=0.05)
        with timed(f"load {KEYS:,} keys ({len(workload.order):,} events)", _log):
            async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
                await eventgen.load(conn, workload)
        settings = Settings(database_url=stack.database_url, nats_url=stack.nats_url,
                            nats_stream=stack.settings.nats_stream,
                            nats_subject_prefix=stack.settings.nats_subject_prefix,
                            usage_stream=stack.settings.usage_stream, usage_subject=stack.settings.usage_subject,
                            spool_dir=str(stack.work_dir / "spool"), argon2_time_cost=1, argon2_memory_kib=1024)
        app = create_app(settings)
        async with asgi.lifespan(app):
            states = sorted(components_of(app.state).cache.states(), key=lambda state: state.key_id)
            hot = states[1].key_id
            organizations: dict[str, int] = {}
            for state in states:
                if state.organization_id is not None:
                    organizations[state.organization_id] = organizations.get(state.organization_id, 0) + 1
            biggest = max(sorted(organizations), key=lambda org: organizations[org])
            with timed(f"write a year of hourly counts of {len(states):,} keys", _log) as watch:
                rows = await seed(stack.database_url, [(s.key_id, s.organization_id) for s in states], hot, start)
            _log(f"  {rows:,} rows in usage_hourly, usage_hourly_requests and usage_rollups ({watch.seconds:.0f} s)")
            admin = await components_of(app.state).keys.create(
                "bench admin", access=(AccessEntry(resource="global", scopes=("admin:apikeys",)),),
                rate_limit=10_000_000)
            year = {"from": start.isoformat(), "to": end.isoformat()}
            queries = {
                f"every key ({len(states):,}), a year per hour, by outcome": {**year, "group_by": "outcome"},
                f"one organization ({organizations[biggest]} keys), a year per hour, by scope":
                    {**year, "organization_id": biggest, "group_by": "scope"},
                "every key, a year per day, by website": {**year, "interval": "day", "group_by": "website"},
                "one key used every hour, a year per hour, by outcome": {**year, "key_id": hot},
                "one key used every hour, a year per hour, by website": {**year, "key_id": hot,
                                                                          "group_by": "website"},
            }
            heavy = {"every key, a year per hour, by website (50 websites)": {**year, "group_by": "website"}}
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                measured = {name: await timings(client, params, admin.token)
                            for name, params in {**queries, **heavy}.items()}
    rows_out, lines = [], ["### Usage analytics", "",
                           f"`GET /v1/analytics/usage` over {DAYS} days of hourly counts of {len(states):,} keys "
                           f"({rows:,} rows in the analytics tables); {ROUNDS} fetches each, in-process (ASGI), "
                           "with an admin key. Cells: the (bucket, group) counts in the answer; CPU: this "
                           "process's (the app's and the client's, not Postgres'), median.", "",
                           "| query | cells | median ms | p95 ms | CPU ms |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, (times, cpu, cells) in measured.items():
        median, p95 = statistics.median(times), sorted(times)[int(len(times) * 0.95) - 1]
        _log(f"  {name}: {cells:,} cells, median {median:.1f} ms, p95 {p95:.1f} ms, "
             f"CPU {statistics.median(cpu):.1f} ms")
        target = name not in heavy  # the largest answer there is: shown, no target
        rows_out.append(Row(f"analytics: {name} (p95)", p95, "ms", target=f"< {TARGET_MS:.0f} ms" if target
                            else "(diagnostic)", met=p95 < TARGET_MS if target else None, command=ctx.command))
        lines.append(f"| {name} | {cells:,} | {median:.1f} | {p95:.1f} | {statistics.median(cpu):.1f} |")
    return BenchResult(rows=rows_out, sections=["\n".join(lines)])
