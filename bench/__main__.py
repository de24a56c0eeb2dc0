"""``python -m bench``: run the benchmarks on a private embedded Postgres and rewrite bench/RESULTS.md.

Each benchmark is an async function ``run(ctx) -> BenchResult`` registered in BENCHMARKS.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench import abuse, analytics, clients, commands, core, dashboard, export, replay, report, revocation, sdk, sink
from bench import featured as verify_featured
from bench import http as verify_http
from bench import million as million_keys
from bench.common import BenchContext, Benchmark, BenchResult
from bench.servers import SERVER_ENV, server_overrides
from keyledger.services.devstack.stack import stack_down, stack_up

BENCHMARKS: dict[str, Benchmark] = {"replay": replay.run, "sink": sink.run, "export": export.run}
BENCHMARKS.update({"verify-http": verify_http.run, "verify-core": core.run, "revocation": revocation.run,
                   "abuse": abuse.run, "commands": commands.run, "dashboard": dashboard.run,
                   "analytics": analytics.run})
BENCHMARKS.update({"inprocess": clients.run_inprocess, "middleware": clients.run_middleware, "sdk": sdk.run})
BENCHMARKS.update({"verify-featured": verify_featured.run})
BENCHMARKS.update({"million": million_keys.run})
# A throw-away cluster: no durability work, no checkpoints or autovacuum in the middle of a measurement.
PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
               "max_wal_size": "4GB", "autovacuum": "off"}
RESULTS = Path(__file__).with_name("RESULTS.md")
QUICK_EVENTS = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate (default 1,000,000)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run with {QUICK_EVENTS:,} events; RESULTS.md is kept unless --results is given")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only this benchmark")
    parser.add_argument("--results", type=Path, help=f"where to write the results (default {RESULTS})")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = QUICK_EVENTS
    if args.events < 10:
        parser.error("--events must be at least 10")
    return args


def _command(name: str, events: int) -> str:
    return f"python -m bench --only {name}" + ("" if events == 1_000_000 else f" --events {events}")


async def run_benchmarks(admin_url: str, names: list[str], events: int) -> dict[str, BenchResult]:
    """Run the named benchmarks one after another against the server at ``admin_url``."""
    results: dict[str, BenchResult] = {}
    for name in names:
        print(f"{name}:", file=sys.stderr, flush=True)
        results[name] = await BENCHMARKS[name](BenchContext(admin_url, events, _command(name, events)))
    return results


async def _server_version(admin_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(admin_url) as conn:
        row = await (await conn.execute("SHOW server_version")).fetchone()
    return str(row[0]) if row else "?"


def main(argv: list[str] | None = None) -> int:
    """Start a private stack, run the benchmarks, print the table, write RESULTS.md."""
    args = parse_args(argv)
    started, load = time.perf_counter(), os.getloadavg()[0]
    data_dir = Path(tempfile.mkdtemp(prefix="keyledger-bench-"))
    try:
        info = stack_up(data_dir, pg_settings=PG_SETTINGS)
        pg_version = asyncio.run(_server_version(info.admin_database_url))
        results = asyncio.run(run_benchmarks(info.admin_database_url, args.only or list(BENCHMARKS), args.events))
    finally:
        stack_down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    seconds = time.perf_counter() - started
    rows = [row for result in results.values() for row in result.rows]
    print(report.console_table(rows))
    print(f"\nwhole run: {seconds:.0f} s", file=sys.stderr)
    target = args.results or (None if args.quick else RESULTS)
    if target == RESULTS and server_overrides():
        target = None  # an A/B run of a setting is not the record of the defaults
        print(f"not writing {RESULTS.name}: {SERVER_ENV} overrides the servers' settings (use --results FILE)",
              file=sys.stderr)
    if target is not None:
        report.write(target, report.markdown(results, events=args.events, seconds=seconds, pg_version=pg_version,
                                             pg_settings=PG_SETTINGS, command="python -m bench", load=load))
        print(f"wrote {target}", file=sys.stderr)
    return 1 if args.strict and any(row.met is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
