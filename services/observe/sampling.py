"""The gauges of an API process, sampled from its components (which it only reads)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from keyledger.services.observe import metrics
from keyledger.services.periodic import every

log = logging.getLogger("keyledger.metrics")
SAMPLE_SECONDS = 2.0


class ApiGauges:
    """Samples an API process's state into its gauges: every ``SAMPLE_SECONDS`` (so a scrape that
    reaches another worker sees this one's recent values) and right before each scrape of this worker."""

    def __init__(self, *, cache: Any, queue: Any, usage: Any, bus: Any) -> None:
        self._cache, self._queue, self._usage, self._bus = cache, queue, usage, bus

    async def sample(self) -> None:
        """Read every gauge's value now, from what the components know already: no query of its own (the
        cache's store follower reads the store every 0.5 s; its last answer says whether Postgres is up
        and how far behind the cache may be), so sampling takes nothing from the pools verify needs."""
        cache = self._cache
        metrics.CACHE_POSITION.set(cache.position)
        metrics.CACHE_KEYS.set(len(cache))
        confirmed = getattr(cache, "confirmed_at", None)
        if confirmed is not None:
            metrics.CACHE_CONFIRMED_AGE.set(max(0.0, time.monotonic() - confirmed))
        metrics.POSTGRES_UP.labels("api").set(1 if getattr(cache, "store_reachable", True) else 0)
        metrics.ARGON2_PENDING.set(self._queue.pending)
        metrics.USAGE_BUFFERED.set(self._usage.buffered)
        metrics.USAGE_SPOOL_BYTES.set(await asyncio.to_thread(self._usage.spool_bytes))
        metrics.NATS_CONNECTED.labels("api").set(1 if self._bus.is_connected else 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until ``stop``."""
        forget_dead_workers()
        await every(stop, SAMPLE_SECONDS, self.sample, log, "sampling metrics", first=True)


def forget_dead_workers() -> None:
    """In multiprocess mode, drop the live gauges of workers that are gone (a worker that crashed and
    was replaced leaves its files behind)."""
    folder = os.environ.get(metrics.MULTIPROC_ENV)
    if not folder:
        return
    for path in Path(folder).glob("gauge_live*_*.db"):
        match = re.search(r"_(\d+)\.db$", path.name)
        if match and not _alive(int(match.group(1))):
            metrics.process_exited(int(match.group(1)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
