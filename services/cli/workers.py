"""``keyledger run | relay | projector | replay``: the long-running workers and the rebuild."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import msgspec
import nats.errors
from nats.aio.client import Client

from keyledger.services.messaging import bus
from keyledger.services.config import Settings
from keyledger.services.audit.sink import AuditSink
from keyledger.services.cache.projector import Projector
from keyledger.services.messaging.relay import Relay
from keyledger.services.cache.replay import replay
from keyledger.services.runtime import open_runtime

log = logging.getLogger("keyledger.workers")


async def connect_until(url: str, name: str, stop: asyncio.Event) -> Client | None:
    """Connect to NATS, retrying while it is unreachable; None if stopped first."""
    delay = 0.2
    while not stop.is_set():
        try:
            return await bus.connect(url, name)
        except (OSError, nats.errors.Error) as exc:
            log.warning("NATS unreachable (%s); retrying in %.1fs", type(exc).__name__, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except asyncio.TimeoutError:
                delay = min(delay * 2, 5.0)
    return None


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_workers(args: argparse.Namespace, settings: Settings) -> None:
    """Run the relay and/or the projector until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    roles = {"run": ("relay", "projector", "audit-sink"), "relay": ("relay",), "projector": ("projector",),
             "audit-sink": ("audit-sink",)}[args.group]
    async with open_runtime(settings) as rt:
        nc = await connect_until(rt.nats_url, f"keyledger-{args.group}", stop)
        if nc is None:
            return
        js = nc.jetstream()
        workers = {"relay": lambda: Relay(rt.pool, js, settings).run(stop),
                   "projector": lambda: Projector(rt.pool, js, settings).run(stop),
                   "audit-sink": lambda: AuditSink(rt.pool, js, settings).run(stop)}
        print(f"keyledger {' + '.join(roles)} running (postgres {rt.database_url}, nats {rt.nats_url}); "
              "Ctrl-C stops", flush=True)
        try:
            await asyncio.gather(*(workers[role]() for role in roles))
        finally:
            await nc.close()


async def run_replay(args: argparse.Namespace, settings: Settings) -> None:
    """Rebuild the key cache from the event store, with a progress bar and the final rate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    async with open_runtime(settings) as rt:
        columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=None, disable=args.json or not sys.stderr.isatty(),
                      transient=True) as bar:
            task = bar.add_task("replay", total=None)
            async with rt.pool.connection() as conn:
                result = await replay(conn, progress=lambda done, total: bar.update(task, completed=done, total=total))
    summary = {**msgspec.structs.asdict(result), "events_per_second": round(result.events_per_second)}
    if args.json:
        print(msgspec.json.encode(summary).decode())
    else:
        print(f"replayed {result.events} events into {result.keys} keys up to position {result.position} "
              f"in {result.seconds:.2f}s ({summary['events_per_second']:,} events/s)")
