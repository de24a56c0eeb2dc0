"""Compliance export benchmark: N audit records (90% usage rows, 10% key lifecycle events) exported as
NDJSON by ``keyledger.services.audit.export.export_lines`` over an ``ExportSource`` (as the API and
``keyledger audit export`` run it) into a null sink (DESIGN: ≥ 200k records/s, memory flat in the
number of records).

Baseline, measured in the same run on the same rows: the export's own query
(``audit_export_source.SELECT``, both tables merged in time order) streamed out of Postgres with
``COPY ... TO STDOUT`` into a null sink on a plain psycopg connection: the database read alone, no
chain, no JSON. Memory: a fresh process exports N/10 and then N records (each alone) and
reports its peak RSS growth (VmHWM) and its tracemalloc peak; flat means the N figure is about the
N/10 one.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import AsyncConnection, sql

from bench.common import BenchContext, BenchResult, Row, fresh_database, timed
from bench.eventgen import EPOCH, SPAN, load, plan
from keyledger.services.audit.export import BATCH, count_records, export_lines
from keyledger.services.audit.export_verify import verify_export
from keyledger.services.audit.signing import SigningKey
from keyledger.services.storage.audit_export_source import SELECT, ExportSource, _where
from keyledger.services.storage.database import open_database
from keyledger.services.storage.usage_partitions import ensure_partition

TARGET_RECORDS_PER_SECOND = 200_000
LIFECYCLE_SHARE = 0.1
FLAT = 1.5  # memory for N records may be at most this many times that for N/10
PROPOSED_INDEX = "CREATE INDEX events_recorded_at ON events (recorded_at, event_id)"
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "curl/8.5.0",
          "python-httpx/0.27.0", "analytics-ingest/2.3 (+https://example.com)")
OUTCOMES = ("VALID",) * 8 + ("FORBIDDEN", "NOT_FOUND", "RATE_LIMITED", "MALFORMED")
_USAGE_COLUMNS = ("id, at, action, outcome, key_id, start, organization_id, scope, granted_by, reason, website_id, "
                  "data, ip, user_agent, request_id")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def usage_copy_chunks(n: int, seed: int = 5, chunk: int = 20_000) -> Iterator[bytes]:
    """COPY text for ``n`` verify events spread evenly in time over the lifecycle traffic's six months."""
    rng, step = random.Random(seed), SPAN / n
    lines: list[str] = []
    for i in range(n):
        at = datetime.fromtimestamp(EPOCH + i * step + rng.random() * step, UTC).isoformat()
        key, site, outcome = rng.randrange(100_000), rng.randrange(10_000), rng.choice(OUTCOMES)
        granted = f"website:site-{site}" if outcome == "VALID" else "\\N"
        reason = f"granted by website:site-{site}" if outcome == "VALID" else f"refused: {outcome.lower()}"
        lines.append(f"{rng.getrandbits(128):032x}\t{at}\tverify\t{outcome}\tk{key:011d}\tkl_k{key:011d}Ab9z\t"
                     f"org-{key % 997}\tread:data\t{granted}\t{reason}\tsite-{site}\tanalytics_data\t"
                     f"203.0.{key % 256}.{site % 256}\t{AGENTS[key % 4]}\t{rng.getrandbits(64):016x}\n")
        if len(lines) == chunk:
            yield "".join(lines).encode()
            lines.clear()
    if lines:
        yield "".join(lines).encode()


async def prepare(conn: AsyncConnection, records: int) -> tuple[int, int]:
    """Load about ``records`` audit records; returns (usage rows, lifecycle events)."""
    lifecycle = max(int(records * LIFECYCLE_SHARE) // 10, 1) * 10
    usage = records - lifecycle
    with timed(f"generate + COPY {lifecycle:,} lifecycle events", _log):
        await load(conn, plan(lifecycle // 10, 10))
    with timed(f"generate + COPY {usage:,} usage rows into daily partitions + VACUUM ANALYZE", _log):
        first = datetime.fromtimestamp(EPOCH, UTC).date()
        for day in range(int(SPAN // 86_400) + 2):
            await ensure_partition(conn, first + timedelta(days=day))
        async with conn.cursor().copy(f"COPY usage_events ({_USAGE_COLUMNS}) FROM STDIN") as copy:
            for block in usage_copy_chunks(usage):
                await copy.write(block)
        await conn.execute("VACUUM (ANALYZE) usage_events")
    return usage, lifecycle


def _export_query(end: datetime | None = None) -> sql.Composed:
    return sql.SQL(SELECT + "WHERE {} ORDER BY r.at, r.id").format(_where("r.at", None, end))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a local process (a Postgres backend); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _backends(conn: AsyncConnection) -> dict[int, float]:
    """CPU seconds so far of every client backend on ``conn``'s database: this connection's and the
    export's (its ``Database`` pool), wherever the pass runs."""
    cur = await conn.execute("SELECT pid FROM pg_stat_activity "
                             "WHERE datname = current_database() AND backend_type = 'client backend'")
    return {int(row[0]): _cpu_seconds(int(row[0])) for row in await cur.fetchall()}


@dataclass(frozen=True)
class Pass:
    """One measured pass: records, wall seconds, CPU seconds of this process and of the Postgres backend."""

    records: int
    seconds: float
    python_cpu: float
    server_cpu: float
    out_bytes: int | None  # what the pass produced (None: rows only)
    first_chunk: float | None = None  # seconds until the first records came out

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    def per_record(self, seconds: float) -> float:
        return seconds / self.records * 1e6


async def _measure(conn: AsyncConnection, records: int, work: Awaitable[int | None],
                   marks: list[float] | None = None) -> Pass:
    """Run ``work``; server CPU is that of every backend of the database (the idle ones add ~0)."""
    before = await _backends(conn)
    started, cpu = time.perf_counter(), time.process_time()
    out = await work
    seconds, python_cpu = time.perf_counter() - started, time.process_time() - cpu
    after = await _backends(conn)
    server = sum(after.get(pid, used) - used for pid, used in before.items())  # gone: unknown, 0
    server += sum(used for pid, used in after.items() if pid not in before)
    return Pass(records, seconds, python_cpu, server, out, marks[0] - started if marks else None)


async def raw_copy(conn: AsyncConnection) -> int:
    """The baseline: the export's query through COPY TO STDOUT into a null sink; returns bytes read."""
    size = 0
    async with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT").format(_export_query())) as copy:
        async for data in copy:
            size += len(data)
    return size


BENCH_KEY = SigningKey.generate()  # signs the benchmark's exports (one manifest each: no measurable cost)


async def cursor_read(source: ExportSource, batch: int = BATCH) -> None:
    """Diagnostic: the export's server-side cursor read alone (``ExportSource.rows``: rows fetched,
    no chain, no JSON)."""
    async for _ in source.rows(None, None, batch):
        pass


async def export_to_null(source: ExportSource, fmt: str, end: datetime | None = None,
                         marks: list[float] | None = None) -> int:
    """The measured thing: the whole export in ``fmt`` into a null sink; returns bytes produced.
    ``marks`` gets the time the first chunk came out."""
    size = 0
    async for chunk in export_lines(source, fmt, None, end, key=BENCH_KEY):
        if marks is not None and not marks:
            marks.append(time.perf_counter())
        size += len(chunk)
    return size


async def _plan(conn: AsyncConnection) -> list[str]:
    async with conn.transaction():
        rows = await (await conn.execute(sql.SQL("EXPLAIN DECLARE c CURSOR FOR {}").format(_export_query()))).fetchall()
    return [str(r[0]) for r in rows if "usage_events_" not in r[0] and "Cond:" not in r[0] and "Filter" not in r[0]]


async def _events_index(conn: AsyncConnection) -> bool:
    row = await (await conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'events' AND indexdef LIKE '%(recorded_at%'")).fetchone()
    return bool(row and row[0])


# -- memory: a fresh process per size, so one run's freed memory cannot hide the next one's peak -----------

def _vm(name: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{name}:\s+(\d+) kB", status.read(), re.M)
    return int(match.group(1)) * 1024 if match else 0


async def _memory_child(url: str, end: str | None, traced: bool) -> dict[str, float]:
    async with open_database(url, min_size=1, max_size=1) as db:
        source = ExportSource(db)
        until = datetime.fromisoformat(end) if end else None
        records = await count_records(source, None, until)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM to the current RSS
        rss = _vm("VmRSS")
        if traced:
            tracemalloc.start()
        await export_to_null(source, "ndjson", until)
        traced_peak = tracemalloc.get_traced_memory()[1] if traced else 0
        return {"records": records, "rss_growth": _vm("VmHWM") - rss, "traced_peak": traced_peak}


def memory(url: str, end: datetime | None, traced: bool) -> dict[str, float]:
    """Peak memory of exporting [start of data, end) in a fresh Python process."""
    args = [sys.executable, "-m", "bench.export", "--memory", url, end.isoformat() if end else "", str(traced)]
    done = subprocess.run(args, check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    return dict(json.loads(done.stdout))


# -- the benchmark ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Results:
    raw: Pass
    read: Pass
    ndjson: Pass
    csv: Pass
    verify_rate: float
    memory: dict[str, dict[str, float]]
    plan: list[str]
    events_index: bool
    with_index: Pass | None  # what-if: the export again after adding the proposed events index


async def measure(conn: AsyncConnection, source: ExportSource, url: str, records: int) -> Results:
    """Baseline (on ``conn``), the export (from ``source``) in both formats, verification, and memory
    for N/10 vs N records."""
    await raw_copy(conn)  # warm-up: every pass reads the same cached pages
    with timed("baseline: COPY of the export query into a null sink", _log):
        raw = await _measure(conn, records, raw_copy(conn))
    with timed("diagnostic: the export's cursor read alone (ExportSource.rows)", _log):
        read = await _measure(conn, records, cursor_read(source))
    with timed("export NDJSON (keyledger.services.audit.export.export_lines) into a null sink", _log):
        marks: list[float] = []
        ndjson = await _measure(conn, records, export_to_null(source, "ndjson", marks=marks), marks)
    with timed("export CSV into a null sink", _log):
        csv = await _measure(conn, records, export_to_null(source, "csv"))
    tenth = datetime.fromtimestamp(EPOCH + SPAN / 10, UTC)
    with timed("verify an NDJSON export of the first tenth", _log):
        chunks = [chunk async for chunk in export_lines(source, "ndjson", None, tenth, key=BENCH_KEY)]
        started = time.perf_counter()
        report = verify_export(chunks, BENCH_KEY.public)
        assert report.verified, report.problems[:5]
        verify_rate = report.count / (time.perf_counter() - started)
        del chunks
    mem: dict[str, dict[str, float]] = {}
    with timed("memory: fresh processes exporting N/10 and N records (plain, then traced)", _log):
        for size, end in (("tenth", tenth), ("all", None)):
            plain, traced = memory(url, end, False), memory(url, end, True)
            mem[size] = {**plain, "traced_peak": traced["traced_peak"]}
    plan, events_index, with_index = await _plan(conn), await _events_index(conn), None
    if not events_index:
        with timed(f"what-if: {PROPOSED_INDEX}, then export NDJSON again", _log):
            await conn.execute(PROPOSED_INDEX)
            await conn.execute("ANALYZE events")
            marks = []
            with_index = await _measure(conn, records, export_to_null(source, "ndjson", marks=marks), marks)
    return Results(raw, read, ndjson, csv, verify_rate, mem, plan, events_index, with_index)


def rows(r: Results, command: str) -> list[Row]:
    """The result rows; throughput ratios are against the raw COPY of the same query and rows."""
    target, n = TARGET_RECORDS_PER_SECOND, r.ndjson.records
    tenth, full = r.memory["tenth"], r.memory["all"]
    mib = 1024 * 1024
    flat_rss = full["rss_growth"] <= FLAT * tenth["rss_growth"] + 4 * mib
    return [
        Row("export throughput (NDJSON, chained)", r.ndjson.rate, "records/s", r.raw.rate,
            "raw COPY of the export query", f"≥ {target:,} records/s", r.ndjson.rate >= target, command),
        Row(f"export wall time, {n:,} records", r.ndjson.seconds, "s", target=f"≤ {n / target:.1f} s",
            met=r.ndjson.seconds <= n / target, command=command),
        Row(f"export peak RSS growth, {full['records']:,.0f} records", full["rss_growth"] / mib, "MB",
            tenth["rss_growth"] / mib, f"{tenth['records']:,.0f} records", f"flat (≤ {FLAT}× the N/10 figure)",
            flat_rss, command),
        Row(f"export tracemalloc peak, {full['records']:,.0f} records", full["traced_peak"] / mib, "MB",
            tenth["traced_peak"] / mib, f"{tenth['records']:,.0f} records", "(diagnostic)", None, command),
        Row("export throughput (CSV, chained)", r.csv.rate, "records/s", r.raw.rate, "raw COPY of the export query",
            "(diagnostic)", None, command),
        Row("export's cursor read alone (no chain, no JSON)", r.read.rate, "records/s", r.raw.rate,
            "raw COPY of the export query", "(diagnostic)", None, command),
        Row("verify_export (NDJSON, in memory)", r.verify_rate, "records/s", target="(diagnostic)", command=command),
    ] + ([] if r.with_index is None else [
        Row("what-if: export NDJSON with an index on events (recorded_at, event_id)", r.with_index.rate, "records/s",
            r.raw.rate, "raw COPY of the export query", "(diagnostic)", None, command)])


def section(r: Results) -> str:
    """Where the export's time goes (CPU per record on each side) and the plan it runs."""
    lines = [f"### Where the compliance export's time goes ({r.ndjson.records:,} records, 2 processes)", "",
             "CPU per record of this Python process and of the Postgres backend serving it; the two run "
             "at the same time (the next page is fetched while one is chained), so the wall time per "
             "record is about the larger of the two on an idle machine.", "",
             "| pass | wall µs/record | Python CPU µs/record | Postgres CPU µs/record | first records after "
             "| output |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    passes = [("raw COPY of the export query (baseline)", r.raw), ("cursor read alone", r.read),
              ("export NDJSON", r.ndjson), ("export CSV", r.csv)]
    if r.with_index is not None:
        passes.append(("export NDJSON, what-if: with the proposed events index", r.with_index))
    for name, p in passes:
        out = "—" if p.out_bytes is None else f"{p.out_bytes / 1e6:,.0f} MB"
        first = "—" if p.first_chunk is None else f"{p.first_chunk * 1000:,.0f} ms"
        lines.append(f"| {name} | {p.per_record(p.seconds):.2f} | {p.per_record(p.python_cpu):.2f} | "
                     f"{p.per_record(p.server_cpu):.2f} | {first} | {out} |")
    index = ("present" if r.events_index else
             "absent: the lifecycle branch is sorted by Postgres before the first row (bounded by work_mem, "
             f"spills to disk); `{PROPOSED_INDEX}` lets it stream too (what-if row above)")
    lines += ["", f"Index on `events (recorded_at, ...)`: {index}. The export's cursor plan (partitions elided):",
              "", "```", *r.plan[:8], "```"]
    return "\n".join(lines)


async def run(ctx: BenchContext) -> BenchResult:
    """Load ``ctx.events`` audit records into a fresh database, then measure the export against the raw read."""
    async with fresh_database(ctx.admin_url) as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            usage, lifecycle = await prepare(conn, ctx.events)
            async with open_database(url, min_size=1, max_size=1) as db:
                results = await measure(conn, ExportSource(db), url, usage + lifecycle)
    return BenchResult(rows(results, ctx.command), [section(results)])


if __name__ == "__main__" and sys.argv[1:2] == ["--memory"]:
    _url, _end, _traced = sys.argv[2:5]
    print(json.dumps(asyncio.run(_memory_child(_url, _end or None, _traced == "True"))))
