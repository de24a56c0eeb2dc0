"""``keyledger relay | projector | audit-sink | webhooks | replay``: a long-running worker, and the rebuild."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import msgspec

from keyledger.services.bootstrap.roles import ROLES
from keyledger.services.bootstrap.runtime import open_runtime
from keyledger.services.bootstrap.workers import RoleProcess, open_role
from keyledger.services.cache.relay import Relay
from keyledger.services.cache.replay import replay
from keyledger.services.config import Settings, masked
from keyledger.services.observe import metrics
from keyledger.services.parent import watch_parent
from keyledger.services.periodic import every
from keyledger.services.storage.replay_source import ReplaySource

log = logging.getLogger("keyledger.workers")


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_worker(command: str, settings: Settings) -> None:
    """Run the relay, the projector, the audit sink or the webhooks (``command``) until SIGINT/SIGTERM (or until
    the supervisor that started it is gone)."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    parent = asyncio.create_task(watch_parent(stop))
    try:
        async with open_role(ROLES[command], settings, stop) as running:
            if running is None:
                return
            rt = running.runtime
            where = f"postgres {masked(rt.database_url)}" + (
                f", nats {masked(rt.endpoints.nats_url)}" if running.bus is not None else "")
            print(f"keyledger {command} running ({where}); Ctrl-C stops", flush=True)
            metrics.serve_worker_metrics(command, settings.metrics_port, settings.host)
            await asyncio.gather(running.worker.run(stop), _sample(running, stop))
    finally:
        parent.cancel()


async def _sample(running: RoleProcess, stop: asyncio.Event) -> None:
    """The worker's connection gauges (and the relay's lag) every 2 s."""
    role, relay = running.role.command, running.worker if isinstance(running.worker, Relay) else None

    async def sample() -> None:
        if running.bus is not None:
            metrics.NATS_CONNECTED.labels(role).set(1 if running.bus.is_connected else 0)
        try:
            head = await asyncio.wait_for(running.runtime.store.head_position(), 1.0)
        except Exception:  # noqa: BLE001 - any failure to reach the store means: Postgres is down
            metrics.POSTGRES_UP.labels(role).set(0)
            return
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
