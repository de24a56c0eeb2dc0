"""Usage events leave API processes in batches over JetStream, off the response path.

``emit`` only appends to memory. A background task publishes batches (one message each,
``Nats-Msg-Id`` = batch id, so a re-send is dropped by JetStream or by the sink). While
NATS is unreachable, batches are written to a spool folder and re-sent, oldest first,
once it is back; shutdown flushes or spools what is left. Memory holds at most
``max_buffered`` events; the spool at most ``max_spool_bytes``, past which new events are
dropped and counted (and logged), never blocking a request.

``durable`` (``KEYLEDGER_USAGE_DURABLE``, the default): ``emit`` also returns a future that completes once
the event's batch is in JetStream (acknowledged) or in the spool folder, and the API answers a request only
then, so no answered request loses its audit record even when its process is killed. Batches then leave
at once, up to ``max_inflight`` (``KEYLEDGER_USAGE_INFLIGHT``, default 1) of them awaiting their
acknowledgement at the same time; the events that arrive while every slot is busy leave together in the
next batch (group commit). One slot makes the largest batches, the least CPU per request under load (a
request may wait for the batch ahead of it, then its own); more slots let a request wait for its own batch
only, at the cost of more, smaller publishes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import deque
from pathlib import Path

from keyledger.domain.usage import UsageEvent, decode_batch, encode_batch
from keyledger.services.messaging.usage import UsagePublisher
from keyledger.services.observe import metrics

log = logging.getLogger("keyledger.usage")
SPOOL_CHECK_SECONDS = 5.0  # how often to look for batches spooled by another process, with none of our own


class UsageEmitter:
    """Buffers usage events and publishes them in batches; spools to disk while NATS is away."""

    def __init__(self, publisher: UsagePublisher, spool_dir: Path, max_batch: int = 500,
                 flush_interval: float = 0.05, max_buffered: int = 50_000,
                 max_spool_bytes: int = 512 * 1024 * 1024, durable: bool = False, max_inflight: int = 1) -> None:
        self._publisher = publisher
        self._spool = spool_dir
        self._max_batch, self._interval = max_batch, flush_interval
        self._max_buffered, self._max_spool = max_buffered, max_spool_bytes
        self._buffer: deque[UsageEvent] = deque()
        self._settled: deque[asyncio.Future[None]] = deque()  # durable: one per buffered event, in the same order
        self.durable = durable
        self._max_inflight = max_inflight
        self._inflight: set[asyncio.Task[None]] = set()  # durable: batches awaiting their acknowledgement
        self._wake = asyncio.Event()
        self._spool_dirty, self._spool_checked = True, 0.0  # look in the spool folder at the first chance
        self.published = self.spooled = self.dropped = 0

    def emit(self, event: UsageEvent) -> asyncio.Future[None] | None:
        """Queue one usage event (no I/O; never blocks the caller). ``durable``: the future of its batch
        reaching JetStream or the spool (else None)."""
        self._buffer.append(event)
        settled = None
        if self.durable:
            settled = asyncio.get_running_loop().create_future()
            self._settled.append(settled)
            if len(self._inflight) < self._max_inflight:  # else the batch ahead, landing, wakes the loop
                self._wake.set()
        elif len(self._buffer) >= self._max_batch:
            self._wake.set()
        if len(self._buffer) > self._max_buffered:
            while self._buffer:  # in publishable batches: one file of 50k events exceeds NATS' max payload
                batch, waiting = self._take(self._max_batch)
                self._spill(batch)
                _settle(waiting)
        return settled

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop``; then flush (or spool) everything left."""
        self._spool.mkdir(parents=True, exist_ok=True)
        ready = False
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: self._wake.set())  # stop at once, not after a flush interval
        try:
            while not stop.is_set():
                if not self._wake.is_set():  # woken already (the usual case under load): no timer to arm
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._interval)
                    except TimeoutError:
                        pass
                self._wake.clear()
                if not ready:
                    ready = await self._publisher.ready()
                if ready and self._spool_to_check():
                    await self._resend_spooled()
                if ready and self.durable:
                    self._launch()
                else:
                    await self.flush(spool_only=not ready, drain=False)
        finally:
            stopping.cancel()
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
        await self.flush()

    def _launch(self) -> None:
        """Durable: start publishing what is buffered, in batches, while fewer than ``max_inflight`` are out."""
        while self._buffer and len(self._inflight) < self._max_inflight:
            task = asyncio.ensure_future(self._deliver(*self._take(self._max_batch)))
            self._inflight.add(task)
            task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free: what waited for it leaves now

    async def _deliver(self, batch: list[UsageEvent], waiting: list[asyncio.Future[None]]) -> None:
        """Publish one batch (to the spool if that fails), then let its requests answer."""
        try:
            if not await self._send(str(uuid.uuid4()), encode_batch(batch), len(batch)):
                self._spill(batch)
        finally:
            _settle(waiting)

    async def flush(self, spool_only: bool = False, drain: bool = True) -> None:
        """Send every buffered event now (to the spool when NATS is unreachable). Unless ``drain``, only
        the events buffered when it starts: those that arrive while a batch is being published wait for
        the next round, so a busy process publishes a few full batches, not a stream of tiny ones."""
        pending = len(self._buffer)
        while self._buffer and (drain or pending > 0):
            batch, waiting = self._take(self._max_batch if drain else min(self._max_batch, pending))
            pending -= len(batch)
            try:
                if spool_only or not await self._send(str(uuid.uuid4()), encode_batch(batch), len(batch)):
                    self._spill(batch)
            finally:
                _settle(waiting)

    @property
    def buffered(self) -> int:
        """Events in memory, not yet published."""
        return len(self._buffer)

    def spool_bytes(self) -> int:
        """Bytes of batches waiting in the spool folder."""
        return self._spool_size()

    def _take(self, count: int) -> tuple[list[UsageEvent], list[asyncio.Future[None]]]:
        """The oldest ``count`` events, and (durable) the futures of those events."""
        count = min(count, len(self._buffer))
        settled = self._settled
        return ([self._buffer.popleft() for _ in range(count)],
                [settled.popleft() for _ in range(min(count, len(settled)))])

    async def _send(self, batch_id: str, body: bytes, count: int) -> bool:
        if not await self._publisher.publish(batch_id, body):
            return False
        self.published += count
        metrics.USAGE_PUBLISHED.inc(count)
        return True

    def _spill(self, batch: list[UsageEvent]) -> None:
        body = encode_batch(batch)
        if self._spool_size() + len(body) > self._max_spool:
            self.dropped += len(batch)
            metrics.USAGE_DROPPED.inc(len(batch))
            log.error("usage spool full: %d usage events dropped", len(batch))
            return
        self._spool.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4()}"
        tmp = self._spool / f"{name}.tmp"
        tmp.write_bytes(body)
        os.replace(tmp, self._spool / f"{name}.batch")  # whole files only
        self._spool_dirty = True
        self.spooled += len(batch)
        metrics.USAGE_SPOOLED.inc(len(batch))

    def _spool_to_check(self) -> bool:
        """Whether to look for spooled batches now: after this process spooled one, and otherwise at most every
        ``SPOOL_CHECK_SECONDS`` (batches another process left), not on every wake: listing the folder cost a
        durable request more CPU than publishing its event."""
        now = time.monotonic()
        if self._spool_dirty or now >= self._spool_checked + SPOOL_CHECK_SECONDS:
            self._spool_checked = now
            return True
        return False

    def _spool_size(self) -> int:
        return sum(path.stat().st_size for path in self._spool.glob("*.batch")) if self._spool.exists() else 0

    async def _resend_spooled(self) -> None:
        self._spool_dirty = False  # a batch spooled while this runs sets it again
        for path in sorted(self._spool.glob("*.batch")):
            try:
                body = path.read_bytes()
            except FileNotFoundError:  # another process sent it
                continue
            if len(body) > self._publisher.max_payload:  # written by an older version: split it
                events = decode_batch(body)
                for start in range(0, len(events), self._max_batch):
                    self._spill(events[start:start + self._max_batch])
                path.unlink(missing_ok=True)
                continue
            if not await self._send(path.stem.split("-", 1)[1], body, len(decode_batch(body))):
                self._spool_dirty = True  # still there: try again on the next wake
                return
            path.unlink(missing_ok=True)


def _settle(waiting: list[asyncio.Future[None]]) -> None:
    """Let the requests whose events these were answer (their batch was published, spooled or dropped)."""
    for future in waiting:
        if not future.done():
            future.set_result(None)
