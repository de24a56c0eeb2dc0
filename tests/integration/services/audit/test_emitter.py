"""Usage events reach JetStream exactly once: batched, spooled while NATS is down, flushed at shutdown."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from nats.js import JetStreamContext

from keyledger.domain.usage import UsageEvent, decode_batch
from keyledger.services.audit.emitter import UsageEmitter
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus, connect
from keyledger.services.messaging.usage import UsagePublisher
from tests.support.natsproc import NatsServer
from tests.support.pipeline import isolated_settings, running
from tests.support.wait import until


def usage(n: int) -> list[UsageEvent]:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    return [UsageEvent(id=uuid.uuid4().hex, at=at, action="verify", outcome="VALID", key_id="k", start="kl_k")
            for _ in range(n)]


async def delivered(js: JetStreamContext, settings: Settings) -> list[str]:
    """Every usage event id in the stream, in order (duplicates included)."""
    info = await js.stream_info(settings.usage_stream)
    ids: list[str] = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg(settings.usage_stream, seq)
        ids += [event.id for event in decode_batch(message.data or b"")]
    return ids


async def test_batches_spool_while_nats_is_down_and_arrive_once(tmp_path: Path) -> None:
    settings = isolated_settings()
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        nc = await connect(server.url, "emitter")
        emitter = UsageEmitter(UsagePublisher(nc, settings), tmp_path / "spool", max_batch=50)
        sent: list[UsageEvent] = []

        def emit(events: list[UsageEvent]) -> None:
            sent.extend(events)
            for event in events:
                emitter.emit(event)

        async with running(emitter.run):
            emit(usage(120))
            await until(lambda: emitter.published >= 120, what="first batches")
            server.stop()
            emit(usage(300))
            await until(lambda: emitter.spooled >= 300, what="spooling while NATS is down")
            assert list((tmp_path / "spool").glob("*.batch"))
            server.start()
            await until(lambda: emitter.published >= 420, timeout=30, what="catch-up after restart")
            emit(usage(30))  # stop right away: shutdown flushes them
        assert not list((tmp_path / "spool").glob("*.batch"))
        checker = await connect(server.url, "checker")
        ids = await delivered(checker._js, settings)
        assert sorted(ids) == sorted(e.id for e in sent) and len(ids) == len(set(ids)) == 450
        assert emitter.dropped == 0
        await checker.close()
        await nc.close()
    finally:
        server.stop()


async def test_a_spool_left_by_a_stopped_process_is_sent_by_the_next(tmp_path: Path) -> None:
    settings = isolated_settings()
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        nc = await connect(server.url, "first")
        first = UsageEmitter(UsagePublisher(nc, settings), tmp_path / "spool")
        events = usage(75)
        server.stop()
        async with running(first.run):
            for event in events:
                first.emit(event)
        assert first.spooled == 75 and len(list((tmp_path / "spool").glob("*.batch"))) >= 1  # flushed to disk
        await nc.close()
        server.start()
        nc = await connect(server.url, "second")
        second = UsageEmitter(UsagePublisher(nc, settings), tmp_path / "spool")
        async with running(second.run):
            await until(lambda: second.published >= 75, what="the old spool")
        assert sorted(await delivered(nc._js, settings)) == sorted(e.id for e in events)
        await nc.close()
    finally:
        server.stop()


async def test_an_overflowing_buffer_spills_in_publishable_batches(tmp_path: Path, nats_url: str) -> None:
    nc = await connect(nats_url, "overflow")
    try:
        emitter = UsageEmitter(UsagePublisher(nc, isolated_settings()), tmp_path / "spool", max_batch=10,
                               max_buffered=100)
        for event in usage(101):
            emitter.emit(event)
        files = sorted((tmp_path / "spool").glob("*.batch"))
        assert emitter.spooled == 101 and len(files) == 11
        assert all(len(decode_batch(path.read_bytes())) <= 10 for path in files)
    finally:
        await nc.close()


async def test_durable_events_settle_only_once_in_jetstream_or_the_spool(tmp_path: Path) -> None:
    """``durable``: each event's future completes after its batch was acknowledged (or spooled while NATS is
    down), never before; batches leave at once, so a waiting request waits one publish, not a flush interval."""
    settings = isolated_settings()
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        nc = await connect(server.url, "durable")
        emitter = UsageEmitter(UsagePublisher(nc, settings), tmp_path / "spool", flush_interval=60.0, durable=True)
        first = usage(40)
        settled = [emitter.emit(event) for event in first]
        assert all(future is not None and not future.done() for future in settled)  # nothing sent yet
        async with running(emitter.run):
            for future in settled:
                assert future is not None
                await future  # within the test's time, although the flush interval is a minute
            checker = await connect(server.url, "checker")
            assert sorted(await delivered(checker._js, settings)) == sorted(e.id for e in first)
            await checker.close()
            server.stop()
            await until(lambda: not nc.is_connected, what="the client to notice NATS is gone")
            later = usage(5)
            for event in later:
                future = emitter.emit(event)
                assert future is not None
                await future
            spooled = [e.id for path in (tmp_path / "spool").glob("*.batch") for e in decode_batch(path.read_bytes())]
            assert sorted(spooled) == sorted(e.id for e in later)
        await nc.close()
    finally:
        server.stop()


class _HeldFirst(UsagePublisher):
    """The real publisher, whose first publish waits for ``release`` after JetStream acknowledged it."""

    def __init__(self, nc: Bus, settings: Settings) -> None:
        super().__init__(nc, settings)
        self.holding, self.release = asyncio.Event(), asyncio.Event()

    async def publish(self, batch_id: str, body: bytes) -> bool:
        sent = await super().publish(batch_id, body)
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        return sent


async def test_a_durable_event_waits_for_its_own_batch_not_the_one_ahead(tmp_path: Path, nats_url: str) -> None:
    """Batches are acknowledged side by side: while one batch's acknowledgement is outstanding, the next
    event leaves in a batch of its own and settles without waiting for it (one round trip per answer)."""
    nc = await connect(nats_url, "pipelined")
    publisher = _HeldFirst(nc, isolated_settings())
    emitter = UsageEmitter(publisher, tmp_path / "spool", durable=True, max_inflight=2)
    try:
        async with running(emitter.run):
            first = emitter.emit(usage(1)[0])
            await asyncio.wait_for(publisher.holding.wait(), 10)
            second = emitter.emit(usage(1)[0])
            assert first is not None and second is not None
            await asyncio.wait_for(second, 10)
            assert not first.done(), "the held batch has not returned yet"
            publisher.release.set()
            await asyncio.wait_for(first, 10)
        assert emitter.published == 2
    finally:
        await nc.close()
