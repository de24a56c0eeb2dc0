"""Dashboard pages: server time with 10,000 keys and 1,000,000 usage events (target: under 100 ms a page).

The keyledger app (``create_app``, lifespan on this run's Postgres and NATS, API only) is called in-process
through httpx's ASGI transport, signed in like a browser: the time is the server's work for a page
(authentication, handlers, queries, templates), no network and no browser. The 10,000 keys are bulk-loaded
as events (``bench.eventgen``); the usage events (``--events``, 1M by default) spread over the last 7 days
are stored through the audit sink's own ``UsageTable`` (so ``usage_hourly`` is maintained as in production),
a tenth of them on one key, whose detail page is measured. Each page is fetched ``ROUNDS`` times after a
warm-up; the table gives the median and the 95th percentile.

The hygiene report (``GET /v1/reports/hygiene``, every key's issues and least-privilege suggestion) is timed
the same way. Each key's verifications name what its own grants allow, one or two of them per key (a website
it holds a grant on, a data kind, or for a global grant a website of its own), as keys serving one or a few
websites do: the report reads each key's distinct (scope, website, data kind) uses of the last 30 days, so
its time grows with how many of those there are.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from bench import asgi, eventgen
from bench.common import BenchContext, BenchResult, Row, timed
from bench.servers import private_stack
from keyledger.domain.access import AccessEntry
from keyledger.domain.key import KeyState
from keyledger.domain.usage import UsageEvent
from keyledger.services.config import Settings
from keyledger.services.http.app import create_app
from keyledger.services.http.deps import components_of
from keyledger.services.storage.database import open_database
from keyledger.services.storage.usage_table import UsageBatch, UsageTable

KEYS, ROUNDS, BATCH, TARGET_MS = 10_000, 30, 20_000, 100.0
OUTCOMES = ("VALID",) * 8 + ("FORBIDDEN", "RATE_LIMITED", "NOT_FOUND")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


Asked = tuple[str, str | None, str | None]  # a verification's scope, website id and data kind


def requests_of(states: list[KeyState], seed: int = 3) -> dict[str, list[Asked]]:
    """For each key, the one or two requests its verifications make: each allowed by one of its grants (a
    website it holds, a data kind, or for a global grant a website of its own)."""
    rng, asked = random.Random(seed), {}
    for number, state in enumerate(states):
        options = sorted({(scope, entry.id if entry.resource == "website" else f"site-{number % 50}"
                           if entry.resource == "global" else None,
                           entry.resource if entry.resource not in ("global", "website") else None)
                          for entry in state.access for scope in entry.scopes if not scope.startswith("rate:")},
                         key=str)
        asked[state.key_id] = rng.sample(options, min(len(options), rng.randint(1, 2))) or [
            ("read:data", f"site-{number % 50}", None)]
    return asked


def usage_events(n: int, asked: dict[str, list[Asked]], hot: str, now: datetime, seed: int = 5) -> list[UsageEvent]:
    """``n`` verifications over the last 7 days: a tenth on ``hot``, the rest spread over the keys of ``asked``,
    each naming one of its key's requests."""
    rng, span, key_ids = random.Random(seed), 7 * 86_400, sorted(asked)
    events = []
    for i in range(n):
        key_id = hot if i % 10 == 0 else rng.choice(key_ids)
        scope, website_id, data = rng.choice(asked[key_id])
        events.append(UsageEvent(
            id=uuid.UUID(int=rng.getrandbits(128), version=4).hex, at=now - timedelta(seconds=rng.random() * span),
            action="verify", outcome=rng.choice(OUTCOMES), key_id=key_id, start="kl_bench", scope=scope,
            reason="granted", website_id=website_id, data=data, ip=f"203.0.113.{i % 250}", user_agent="bench/1.0"))
    return events


async def store_usage(database_url: str, events: list[UsageEvent]) -> None:
    """Store the events in batches through the audit sink's table (usage rows, hourly counts, grants used)."""
    async with open_database(database_url, max_size=2) as db:
        table = UsageTable(db)
        for i in range(0, len(events), BATCH):
            await table.store([UsageBatch(uuid.uuid4(), events[i:i + BATCH])])
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("VACUUM (ANALYZE) usage_events")
        await conn.execute("VACUUM (ANALYZE) usage_hourly")
        await conn.execute("VACUUM (ANALYZE) usage_grants")


async def page_ms(client: httpx.AsyncClient, path: str, expect: str,
                  headers: dict[str, str] | None = None) -> list[float]:
    """Milliseconds of ``ROUNDS`` fetches of ``path`` (after one warm-up whose answer must hold ``expect``)."""
    first = await client.get(path, headers=headers)
    if first.status_code != 200 or expect not in first.text:
        raise AssertionError(f"{path}: HTTP {first.status_code} {first.text[:300]!r}")
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        answer = await client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text[:300]
    return times


async def run(ctx: BenchContext) -> BenchResult:
    """Load 10,000 keys and ``ctx.events`` usage events, then time each dashboard page."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    now = datetime.now(UTC)
    async with private_stack(ctx) as stack:
        workload = eventgen.plan(KEYS, events_per_key=3, revoked_share=0.05)
        with timed(f"load {KEYS:,} keys ({len(workload.order):,} events)", _log):
            async with await psycopg.AsyncConnection.connect(stack.database_url, autocommit=True) as conn:
                await eventgen.load(conn, workload)
        hot = workload.key_ids[1]
        settings = Settings(database_url=stack.database_url, nats_url=stack.nats_url,
                            nats_stream=stack.settings.nats_stream,
                            nats_subject_prefix=stack.settings.nats_subject_prefix,
                            usage_stream=stack.settings.usage_stream, usage_subject=stack.settings.usage_subject,
                            spool_dir=str(stack.work_dir / "spool"), argon2_time_cost=1, argon2_memory_kib=1024)
        app = create_app(settings)
        async with asgi.lifespan(app):
            asked = requests_of(sorted(components_of(app.state).cache.states(), key=lambda state: state.key_id))
            with timed(f"store {ctx.events:,} usage events (and their hourly counts and grants used)", _log):
                await store_usage(stack.database_url, usage_events(ctx.events, asked, hot, now))
            admin = await components_of(app.state).keys.create(
                "bench admin", access=(AccessEntry(resource="global", scopes=("admin:apikeys",)),),
                rate_limit=10_000_000)
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                form = await client.get("/dashboard/sign-in")
                token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
                assert token is not None
                signed = await client.post("/dashboard/sign-in", data={"api_key": admin.token,
                                                                       "csrf_token": token.group(1)})
                assert signed.status_code == 303, signed.text[:300]
                pages = {
                    "keys list, page 1 (25 keys with 24 h sparklines)": ("/dashboard/keys", "API Keys"),
                    "keys list, search by name over all keys": ("/dashboard/keys?q=ingest&status=active", "API Keys"),
                    "key detail, 24 h chart + usage events": (f"/dashboard/keys/{hot}", "Verifications per hour"),
                    "key detail, 7 d chart": (f"/dashboard/keys/{hot}?range=7d", "Verifications per hour"),
                    "key detail, usage filtered by outcome": (f"/dashboard/keys/{hot}?outcome=FORBIDDEN",
                                                              "Verifications per hour"),
                    "audit trail, newest 50": ("/dashboard/audit", "Audit trail"),
                    "hygiene, page 1 (25 of 10,000 keys)": ("/dashboard/hygiene", "Hygiene"),
                }
                started = time.perf_counter()  # the first report computes everything: nothing remembered yet
                first = await client.get("/v1/reports/hygiene", headers={"x-api-key": admin.token})
                cold = (time.perf_counter() - started) * 1000
                report = first.json()
                _log(f"  hygiene report: {report['summary']}; the first one took {cold:.1f} ms")
                measured = {name: await page_ms(client, path, expect) for name, (path, expect) in pages.items()}
                hygiene = await page_ms(client, "/v1/reports/hygiene", '"overprivileged"',
                                        headers={"x-api-key": admin.token})
    rows, lines = [], ["### Dashboard pages", "",
                       f"{KEYS:,} keys, {ctx.events:,} usage events over 7 days ({ctx.events // 10:,} on the key "
                       f"shown); {ROUNDS} fetches each, in-process (ASGI), signed in.", "",
                       "| page | median ms | p95 ms |", "| --- | --- | --- |"]
    for name, times in measured.items():
        median, p95 = statistics.median(times), sorted(times)[int(len(times) * 0.95) - 1]
        _log(f"  {name}: median {median:.1f} ms, p95 {p95:.1f} ms")
        rows.append(Row(f"dashboard: {name} (p95)", p95, "ms", target=f"< {TARGET_MS:.0f} ms", met=p95 < TARGET_MS,
                        command=ctx.command))
        lines.append(f"| {name} | {median:.1f} | {p95:.1f} |")
    median, p95 = statistics.median(hygiene), sorted(hygiene)[int(len(hygiene) * 0.95) - 1]
    _log(f"  hygiene report: median {median:.1f} ms, p95 {p95:.1f} ms")
    rows.append(Row(f"hygiene report, {KEYS:,} keys (p95)", p95, "ms", target=f"< {TARGET_MS:.0f} ms",
                    met=p95 < TARGET_MS, command=ctx.command))
    lines.append(f"| `GET /v1/reports/hygiene` ({report['summary']['keys']:,} active keys, "
                 f"{report['summary']['overprivileged']:,} with a suggestion) | {median:.1f} | {p95:.1f} |")
    lines += ["", f"The run's first hygiene report, with nothing remembered yet, took {cold:.1f} ms."]
    return BenchResult(rows=rows, sections=["\n".join(lines)])
