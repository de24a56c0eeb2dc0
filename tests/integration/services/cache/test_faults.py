"""Faults in the pipeline: a SIGKILLed projector, a NATS restart, re-published events, version gaps.

Real Postgres and NATS throughout; the projector also runs as a real subprocess that gets SIGKILLed.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO

import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.access import AccessEntry
from keyledger.domain.events import Event, KeyRevoked, KeyRotated
from keyledger.domain.key import KeyState
from keyledger.domain.recorded import RecordedEvent
from keyledger.services.bootstrap import roles
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.cache.projector import Projector, ProjectorStats
from keyledger.services.cache.relay import RELAY
from keyledger.services.cache.replay import replay
from keyledger.services.config import Settings
from keyledger.services.hashing import SecretHasher
from keyledger.services.keys.service import KeyService
from keyledger.services.messaging.connection import Bus, connect
from keyledger.services.messaging.streams import all_subjects, encode_message, subject_for
from keyledger.services.storage.checkpoints import read_checkpoint
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.key_cache_table import PROJECTOR
from keyledger.services.storage.replay_source import ReplaySource
from tests.support.env import clean_env
from tests.support.factories import T0, changes, created
from tests.support.natsproc import NatsServer
from tests.support.paths import REPO_ROOT as ROOT
from tests.support.pipeline import (
    folded_streams,
    isolated_settings,
    jetstream,
    live_cache_for,
    projector_caught_up,
    projector_for,
    relay_for,
    running,
    table_model,
)
from tests.support.wait import until

READ = (AccessEntry(resource="global", scopes=("read:data",)),)


# ---------------------------------------------------------------- helpers


def key_id(i: int) -> str:
    """A key id that is a valid NATS subject token."""
    return f"fk{i:010d}"


def lifecycle(kid: str, length: int) -> list[Event]:
    """``length`` events of one key: created, renames, and a rotation or revocation at the end."""
    events: list[Event] = [created(kid), *changes(kid, length - 2)]
    end = T0 + timedelta(hours=1)
    if sum(map(ord, kid)) % 3:
        events.append(KeyRotated(key_id=kid, at=end, secret_hash="$argon2id$rotated", start=f"kl_{kid}x"))
    else:
        events.append(KeyRevoked(key_id=kid, at=end, reason="fault test"))
    return events


async def write_keys(store: PostgresEventStore, count: int, length: int, first: int = 0) -> dict[str, int]:
    """Append ``count`` keys of ``length`` events each; returns each key's version."""
    versions = {}
    for i in range(first, first + count):
        kid = key_id(i)
        await store.append(kid, 0, lifecycle(kid, length))
        versions[kid] = length
    return versions


async def table_rows(pool: AsyncConnectionPool) -> list[tuple[str, int, int, str]]:
    """The key cache table verbatim: (key_id, version, position, state)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT key_id, version, position, state::text FROM key_cache ORDER BY key_id")
        return list(await cur.fetchall())


async def checkpoint(pool: AsyncConnectionPool, name: str = PROJECTOR) -> int:
    """The position saved under checkpoint ``name``."""
    async with pool.connection() as conn:
        position, _ = await read_checkpoint(conn, name)
    return position


async def stream_lengths(pool: AsyncConnectionPool) -> dict[str, int]:
    """Each stream's number of events, counted in the store."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT stream_id, count(*) FROM events GROUP BY stream_id")
        return {stream_id: int(n) for stream_id, n in await cur.fetchall()}


async def table_versions(pool: AsyncConnectionPool) -> dict[str, int]:
    """Each key's version column in the key cache table."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT key_id, version FROM key_cache")
        return {key: int(version) for key, version in await cur.fetchall()}


def worker_env(settings: Settings, database_url: str, nats_url: str) -> dict[str, str]:
    """The environment of a ``python -m keyledger.services.cli`` worker subprocess."""
    return clean_env({"DATABASE_URL": database_url, "NATS_URL": nats_url,
                      "KEYLEDGER_NATS_STREAM": settings.nats_stream,
                      "KEYLEDGER_NATS_SUBJECT_PREFIX": settings.nats_subject_prefix,
                      "KEYLEDGER_ARGON2_TIME_COST": "1", "KEYLEDGER_ARGON2_MEMORY_KIB": "1024"})


class Workers:
    """Subprocesses running ``python -m keyledger.services.cli <role>``; ``close()`` kills whatever still runs."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self._env, self._log_dir = env, log_dir
        self._procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, role: str) -> subprocess.Popen[bytes]:
        """Start one worker; its output goes to a log file in ``log_dir``."""
        out = (self._log_dir / f"{role}-{len(self._procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "keyledger.services.cli", role], cwd=ROOT, env=self._env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self._procs.append((proc, out))
        return proc

    def logs(self) -> str:
        """Everything the workers printed."""
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')}"
                         for path in sorted(self._log_dir.glob("*.log")))

    def close(self) -> None:
        """SIGKILL every worker still running and reap it."""
        for proc, out in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            out.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Workers]]:
    """Worker subprocess groups created by the test; killed afterwards whatever happens."""
    groups: list[Workers] = []
    try:
        yield groups
    finally:
        for group in groups:
            group.close()


async def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a worker and wait until it is gone."""
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait, 10)


# ---------------------------------------------------------------- 1. projector SIGKILLed mid-stream

DURABLE = roles.PROJECTOR.consumer  # the projector's durable consumer


async def kill_mid_batch(group: Workers, pool: AsyncConnectionPool, js: JetStreamContext,
                         settings: Settings) -> tuple[int, int]:
    """Start a projector subprocess and SIGKILL it while it holds messages it has not committed.

    Returns ``(committed stream_seq, delivered stream_seq)`` of the durable consumer at the kill.
    """
    floor = 0
    for _ in range(5):
        proc = group.start("projector")

        async def holding_a_batch(floor: int = floor) -> bool:
            async with pool.connection() as conn:
                position, committed = await read_checkpoint(conn, PROJECTOR)
            try:
                info = await js.consumer_info(settings.nats_stream, DURABLE)
            except NotFoundError:
                return False
            return position > floor and info.delivered.stream_seq > committed

        await until(holding_a_batch, timeout=30, what="projector progress", explain=group.logs)
        await kill(proc)
        async with pool.connection() as conn:
            floor, committed = await read_checkpoint(conn, PROJECTOR)
        delivered = (await js.consumer_info(settings.nats_stream, DURABLE)).delivered.stream_seq
        if delivered > committed:  # else it committed the batch just before dying: try again
            return committed, delivered
    raise AssertionError("could not kill the projector while it held an uncommitted batch")


async def live_cache_matches(cache: LiveKeyCache, expected: dict[str, KeyState]) -> bool:
    """Whether the live cache holds exactly ``expected``."""
    return len(cache) == len(expected) and all(cache.get(kid) == state for kid, state in expected.items())


def lagging(model: dict[str, KeyState], expected: dict[str, KeyState]) -> str:
    """A readable list of the keys where ``model`` differs from ``expected``."""
    bad = sorted(kid for kid in expected.keys() | model.keys() if model.get(kid) != expected.get(kid))
    have = {kid: model[kid].version if kid in model else None for kid in bad}
    want = {kid: expected[kid].version if kid in expected else None for kid in bad}
    return f"{len(bad)} key(s) differ; version in the model vs in the store: " + ", ".join(
        f"{kid}: {have[kid]} vs {want[kid]}" for kid in bad[:10])


async def test_projector_killed_mid_stream_and_restarted_ends_identical_to_replay(
        pool: AsyncConnectionPool, db: Database, store: PostgresEventStore, database_url: str, nats_url: str,
        tmp_path: Path, workers: list[Workers]) -> None:
    settings = isolated_settings()
    group = Workers(worker_env(settings, database_url, nats_url), tmp_path)
    workers.append(group)
    versions = await write_keys(store, 300, 10)
    rng = random.Random(7)
    keep_writing = asyncio.Event()
    keep_writing.set()

    async def writer() -> None:
        """Keep work in flight: more events on random keys and a few new keys, until told to stop."""
        n = len(versions)
        while keep_writing.is_set():
            for _ in range(20):
                kid = rng.choice(list(versions))
                await store.append(kid, versions[kid], changes(kid, 3, start=T0 + timedelta(days=1)))
                versions[kid] += 3
            versions.update(await write_keys(store, 2, 5, first=n))
            n += 2
            await asyncio.sleep(0)

    async with jetstream(nats_url, settings) as (bus, js):
        relay = relay_for(db, bus, settings, page_size=200)
        async with running(relay.run):
            writing = asyncio.create_task(writer())
            try:
                committed, delivered = await kill_mid_batch(group, pool, js, settings)
                killed_at, head_at_kill = await checkpoint(pool), await store.head_position()
                assert 0 < killed_at < head_at_kill and committed < delivered
                await until(lambda: _head_beyond(store, head_at_kill + 100), what="events while it is down")
            finally:
                keep_writing.clear()
                await writing
            restarted = group.start("projector")
            await until(lambda: projector_caught_up(db), timeout=30, what="projector", explain=group.logs)
            folded = await folded_streams(store)
            projected = await table_model(db)
            assert projected == folded, "checkpoint at the head, yet " + lagging(projected, folded)
            cache = live_cache_for(db, bus, settings)
            await cache.start()
            try:
                await until(lambda: live_cache_matches(cache, folded), timeout=10, what="live cache")
            finally:
                await cache.stop()
            projected_rows = await table_rows(pool)
            restarted.terminate()  # before the stream goes: it would create it again
            assert await asyncio.to_thread(restarted.wait, 10) == 0, group.logs()
        assert sum(versions.values()) == await store.head_position() > head_at_kill
        assert {kid: state.version for kid, state in folded.items()} == versions
        await replay(ReplaySource(db))
        assert await table_rows(pool) == projected_rows


async def _head_beyond(store: PostgresEventStore, position: int) -> bool:
    return await store.head_position() > position


# ---------------------------------------------------------------- 2. NATS restarted under load


async def test_nats_restart_while_commands_run_every_event_reaches_the_cache_exactly_once(
        pool: AsyncConnectionPool, db: Database, store: PostgresEventStore, tmp_path: Path) -> None:
    settings = isolated_settings()
    keys = KeyService(store, SecretHasher(settings), random_bytes=random.Random(3).randbytes)
    rng = random.Random(4)
    issued: list[str] = []

    async def commands(n: int) -> None:
        """``n`` commands of every kind; they only touch Postgres, so they must all succeed."""
        for i in range(n):
            if not issued or i % 4 == 0:
                issued.append((await keys.create(f"k{len(issued)}", access=READ)).state.key_id)
            elif i % 4 == 1:
                await keys.change_access(rng.choice(issued), name=f"renamed {i}")
            elif i % 4 == 2:
                await keys.rotate(rng.choice(issued), grace_seconds=60)
            else:
                await keys.revoke(issued.pop(rng.randrange(len(issued))), reason="fault test")

    server = NatsServer(tmp_path / "jetstream")
    server.start()
    clients: list[Bus] = []
    try:
        async with jetstream(server.url, settings) as (bus, js):
            caches: list[LiveKeyCache] = []

            async def follow_again() -> None:  # as services/bootstrap/verify_side.py wires it (OnConnect)
                for live in caches:
                    await live.resubscribe()

            for name in ("relay", "projector"):
                clients.append(await connect(server.url, f"test-{name}"))
            clients.append(await connect(server.url, "test-live-cache", on_reconnect=follow_again))
            relay = relay_for(db, clients[0], settings)
            projector = projector_for(db, clients[1], settings)
            cache = live_cache_for(db, clients[2], settings)
            caches.append(cache)
            async with running(relay.run, projector.run):
                await commands(20)
                await until(lambda: projector_caught_up(db), what="projector before the restart")
                await cache.start()
                try:
                    server.stop()
                    down_from = await store.head_position()
                    await commands(40)  # NATS is down: commands still succeed
                    assert await store.head_position() > down_from == relay.published
                    server.start()
                    await commands(20)
                    head = await store.head_position()
                    await until(lambda: projector_caught_up(db), timeout=30, what="projector after the restart",
                                explain=lambda: str(projector.stats))
                    folded = await folded_streams(store)
                    await until(lambda: live_cache_matches(cache, folded), timeout=30,
                                what="live cache after the restart",
                                explain=lambda: f"position {cache.position} of {head}")
                finally:
                    if not server.running:  # a failure while it was down: the cleanup needs it
                        server.start()
                    await cache.stop()
            table = await table_model(db)
            assert table == folded, lagging(table, folded)
            assert await table_versions(pool) == await stream_lengths(pool)
            assert (projector.stats.applied, projector.stats.repaired) == (head, 0), projector.stats
            assert (await js.stream_info(settings.nats_stream)).state.messages == head
    finally:
        for nc in clients:
            await nc.close()
        server.stop()


# ---------------------------------------------------------------- 3. the same event published twice


async def test_publishing_an_event_again_changes_nothing(pool: AsyncConnectionPool, db: Database,
                                                         store: PostgresEventStore,
                                                         nats_url: str) -> None:
    settings = isolated_settings()
    await write_keys(store, 20, 6)
    head = await store.head_position()
    async with jetstream(nats_url, settings) as (bus, js):
        relay, projector = relay_for(db, bus, settings), projector_for(db, bus, settings)
        async with running(relay.run, projector.run):
            await until(lambda: projector_caught_up(db), what="projector")
            before, stats = await table_rows(pool), msgspec.structs.replace(projector.stats)
            assert len(before) == 20 and stats == ProjectorStats(applied=head)
            again = (await store.read_stream(key_id(3)))[2]
            subject, body = subject_for(settings, again.stream_id), encode_message(again)

            # (a) same Nats-Msg-Id: JetStream drops it
            ack = await js.publish(subject, body, headers={"Nats-Msg-Id": str(again.event_id)})
            assert ack.duplicate and (await js.stream_info(settings.nats_stream)).state.messages == head

            # (b) a new Nats-Msg-Id: the projector gets it and skips it by version
            ack = await js.publish(subject, body, headers={"Nats-Msg-Id": str(uuid.uuid4())})
            assert not ack.duplicate and ack.seq == head + 1
            await until(lambda: _stats_reach(projector, duplicates=1), what="the duplicate to be consumed")
            assert projector.stats == ProjectorStats(applied=head, duplicates=1)
            assert await table_rows(pool) == before
            assert await checkpoint(pool) == head

            # (c) the relay re-publishes everything: JetStream's de-duplication drops it all...
            published = relay.published
            await reset_relay_checkpoint(pool)
            await until(lambda: _holds(relay.published == published + head), what="the relay to re-publish")
            assert (await js.stream_info(settings.nats_stream)).state.messages == head + 1
            # ...and beyond the de-duplication window the projector skips every event by version
            await js.update_stream(StreamConfig(
                name=settings.nats_stream, subjects=[all_subjects(settings)], storage=StorageType.FILE,
                duplicate_window=0.1))
            # a message id newer than all the relay's: once JetStream accepts it again, theirs have aged out
            probe = {"Nats-Msg-Id": str(uuid.uuid4())}
            assert not (await js.publish(subject, body, headers=probe)).duplicate
            await until(lambda: _accepted(js, subject, body, probe), timeout=30,
                        what="the de-duplication window to pass")
            await reset_relay_checkpoint(pool)
            await until(lambda: _stats_reach(projector, duplicates=3 + head), what="re-published events")
            assert (await js.stream_info(settings.nats_stream)).state.messages == 2 * head + 3
            assert projector.stats == ProjectorStats(applied=head, duplicates=3 + head)  # the probe's two too
            assert await table_rows(pool) == before
            assert await checkpoint(pool) == head
        assert await table_model(db) == await folded_streams(store)


async def reset_relay_checkpoint(pool: AsyncConnectionPool) -> None:
    """Make the relay start over from position 0."""
    async with pool.connection() as conn:
        cur = await conn.execute("UPDATE checkpoints SET position = 0 WHERE name = %s", (RELAY,))
        assert cur.rowcount == 1


async def _accepted(js: JetStreamContext, subject: str, body: bytes, headers: dict[str, str]) -> bool:
    """Publish ``body`` again; whether JetStream stored it (its id no longer in the de-duplication window)."""
    return not (await js.publish(subject, body, headers=headers)).duplicate


async def _stats_reach(projector: Projector, duplicates: int) -> bool:
    return projector.stats.duplicates >= duplicates


async def _table_at(pool: AsyncConnectionPool, versions: dict[str, int]) -> bool:
    return await table_versions(pool) == versions


async def _holds(value: bool) -> bool:
    return value


# ---------------------------------------------------------------- 4. a version gap


async def test_a_version_gap_is_repaired_from_the_store(pool: AsyncConnectionPool, db: Database,
                                                        store: PostgresEventStore,
                                                        nats_url: str) -> None:
    settings = isolated_settings()
    unseen, behind = key_id(1), key_id(2)
    async with jetstream(nats_url, settings) as (bus, js):
        projector = projector_for(db, bus, settings)

        async def publish_by_hand(recorded: RecordedEvent) -> None:
            await js.publish(subject_for(settings, recorded.stream_id), encode_message(recorded),
                             headers={"Nats-Msg-Id": str(uuid.uuid4())})

        async with running(projector.run):
            cache = live_cache_for(db, bus, settings)
            await cache.start()
            try:
                # `unseen`: v1..v3 stored, only v3 published (the stream skips positions 1 and 2)
                unseen_events = await store.append(unseen, 0, lifecycle(unseen, 3))
                behind_events = await store.append(behind, 0, [created(behind)])
                await publish_by_hand(unseen_events[-1])
                await publish_by_hand(behind_events[0])
                await until(lambda: _table_at(pool, {unseen: 3, behind: 1}), what="v3 and v1",
                            explain=lambda: str(projector.stats))
                assert projector.stats.applied == 4 and projector.stats.filled + projector.stats.repaired > 0
                # `behind`: v2..v4 stored, and the checkpoint already past v2 and v3 without the table having
                # them (as a projector that lost a batch used to leave it); only v4 published
                behind_events += await store.append(behind, 1, lifecycle(behind, 4)[1:])
                async with pool.connection() as conn:
                    await conn.execute("UPDATE checkpoints SET position = %s WHERE name = %s",
                                       (behind_events[-2].global_position, PROJECTOR))
                await publish_by_hand(behind_events[-1])
                await until(lambda: _table_at(pool, {unseen: 3, behind: 4}), what="v4",
                            explain=lambda: str(projector.stats))
                assert projector.stats.repaired > 0, projector.stats
                folded = await folded_streams(store)
                assert [folded[unseen].version, folded[behind].version] == [3, 4]
                table = await table_model(db)
                assert table == folded, lagging(table, folded)
                await until(lambda: live_cache_matches(cache, folded), what="live cache repair")
            finally:
                await cache.stop()
            assert await table_versions(pool) == await stream_lengths(pool)
            assert await checkpoint(pool) == await store.head_position()
            # the relay now publishes all 7 (ids unknown to JetStream, as ours were random): all already applied
            stats = msgspec.structs.replace(projector.stats)
            relay = relay_for(db, bus, settings)
            async with running(relay.run):
                await until(lambda: _stats_reach(projector, stats.duplicates + 7), what="relayed events")
        assert projector.stats == msgspec.structs.replace(stats, duplicates=stats.duplicates + 7)
        assert await table_model(db) == folded
