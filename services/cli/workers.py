"""``keyledger run | relay | projector | replay``: the long-running workers and the rebuild."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import msgspec

from keyledger.services.audit.sink import AuditSink
from keyledger.services.cache.projector import Projector
from keyledger.services.cache.relay import Relay
from keyledger.services.cache.replay import replay
from keyledger.services.config import Settings, masked
from keyledger.services.messaging.connection import Bus, connect_until
from keyledger.services.messaging.events import event_consumer
from keyledger.services.messaging.usage import usage_consumer
from keyledger.services.observe import metrics
from keyledger.services.parent import watch_parent
from keyledger.services.periodic import every
from keyledger.services.runtime import Runtime, open_runtime
from keyledger.services.storage.checkpoints import Checkpoints
from keyledger.services.storage.key_cache_table import KeyCacheTable
from keyledger.services.storage.replay_source import ReplaySource
from keyledger.services.storage.usage_table import UsageTable

log = logging.getLogger("keyledger.workers")
_NATS_ROLE = {"relay": "relay", "projector": "projector", "audit-sink": "sink"}  # worker -> its NATS user


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_workers(args: argparse.Namespace, settings: Settings) -> None:
    """Run the relay, the projector or the audit sink until SIGINT/SIGTERM (or until the supervisor that
    started it is gone)."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    parent = asyncio.create_task(watch_parent(stop))
    roles = {"relay": ("relay",), "projector": ("projector",), "audit-sink": ("audit-sink",)}[args.group]
    async with open_runtime(settings) as rt:
        buses: dict[str, Bus] = {}
        try:
            for role in roles:  # each on a connection of its own, with only its role's permissions
                bus = await connect_until(rt.endpoints.nats_url_for(_NATS_ROLE[role]), f"keyledger-{role}", stop,
                                          role=_NATS_ROLE[role])
                if bus is None:
                    return
                buses[role] = bus
            relay = Relay(rt.db, rt.store, Checkpoints(rt.db), buses["relay"], settings) if "relay" in roles else None
            workers = {
                "relay": lambda: relay.run(stop) if relay is not None else asyncio.sleep(0),
                "projector": lambda: Projector(KeyCacheTable(rt.db, rt.store), event_consumer(
                    buses["projector"], settings, "key-cache-projector", 500)).run(stop),
                "audit-sink": lambda: AuditSink(UsageTable(rt.db), usage_consumer(
                    buses["audit-sink"], settings, "audit-sink", 200)).run(stop),
            }
            where = f"postgres {masked(rt.database_url)}, nats {masked(rt.endpoints.nats_url)}"
            print(f"keyledger {' + '.join(roles)} running ({where}); Ctrl-C stops", flush=True)
            metrics.serve_worker_metrics(roles[0], settings.metrics_port, settings.host)
            await asyncio.gather(*(workers[role]() for role in roles), _sample(rt, buses, relay, stop))
        finally:
            for bus in buses.values():
                await bus.close()
            parent.cancel()


async def _sample(rt: Runtime, buses: dict[str, Bus], relay: Relay | None, stop: asyncio.Event) -> None:
    """A worker's connection gauges (and the relay's lag) every 2 s."""
    async def sample() -> None:
        for role, bus in buses.items():
            metrics.NATS_CONNECTED.labels(role).set(1 if bus.is_connected else 0)
        try:
            head = await asyncio.wait_for(rt.store.head_position(), 1.0)
        except Exception:  # noqa: BLE001 - any failure to reach the store means: Postgres is down
            for role in buses:
                metrics.POSTGRES_UP.labels(role).set(0)
            return
        for role in buses:
            metrics.POSTGRES_UP.labels(role).set(1)
        if relay is not None:
            metrics.RELAY_LAG.set(max(0, head - relay.position))

    await every(stop, 2.0, sample, log, "sampling metrics", first=True)


async def run_replay(args: argparse.Namespace, settings: Settings) -> None:
    """Rebuild the key cache from the event store in ``--workers`` processes (default: one per core), with a
    progress bar and the final rate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    async with open_runtime(settings, admin=True) as rt:  # the rebuild swaps in a new key_cache table
        columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=None, disable=args.json or not sys.stderr.isatty(),
                      transient=True) as bar:
            task = bar.add_task("replay", total=None)
            result = await replay(ReplaySource(rt.db), workers=args.workers,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
    summary = {**msgspec.structs.asdict(result), "events_per_second": round(result.events_per_second)}
    if args.json:
        print(msgspec.json.encode(summary).decode())
    else:
        print(f"replayed {result.events} events into {result.keys} keys up to position {result.position} "
              f"in {result.seconds:.2f}s ({summary['events_per_second']:,} events/s, {result.workers} "
              f"process{'es' if result.workers > 1 else ''})")
