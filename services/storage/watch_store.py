"""What the watch role keeps in Postgres: the usage batches it applied (``watch_batches``), each key's profile
(``watch_profiles``) and the findings, written together in one transaction per fetch; and the rebuild of all
of it from the usage table (``keyledger watch rebuild``).

A transaction of the watch holds a lock that a rebuild holds for its whole length, so the two never interleave:
a rebuild claims every batch the usage table holds, and the watch then skips those batches when they arrive.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager

import msgspec
from psycopg import AsyncConnection

from keyledger.domain.events import decode_event
from keyledger.domain.finding_rules import Profile
from keyledger.domain.findings import REPORTED_KINDS, Finding
from keyledger.domain.key import KeyState, fold
from keyledger.domain.notices import Notice
from keyledger.domain.usage import USAGE_COLUMNS, UsageEvent
from keyledger.services.storage.database import Database
from keyledger.services.storage.findings import load_findings, save_findings
from keyledger.services.storage.key_cache_table import load_keys
from keyledger.services.storage.notices import append_notice

_LOCK = 0x77617463  # advisory lock: the watch's transactions and a rebuild never interleave
_CLAIM = "INSERT INTO watch_batches (batch_id) SELECT unnest(%s::uuid[]) ON CONFLICT DO NOTHING RETURNING batch_id"
_SAVE_PROFILES = ("INSERT INTO watch_profiles (key_id, profile) SELECT * FROM unnest(%s::text[], %s::jsonb[]) "
                  "ON CONFLICT (key_id) DO UPDATE SET profile = excluded.profile")
_RESPONSES = ("UPDATE findings f SET response = kept.response "
              "FROM unnest(%s::uuid[], %s::text[]) AS kept(id, response) WHERE f.id = kept.id")
_USAGE = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_events ORDER BY at, id"
_encode = msgspec.json.Encoder().encode
_profile = msgspec.json.Decoder(Profile)


class WatchTransaction:
    """One transaction of the watch: what it reads, and everything it writes (committed together)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def claim(self, batch_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Claim the batches; the ids not claimed before (the others were applied already)."""
        cur = await self._conn.execute(_CLAIM, (list(batch_ids),))
        return {row[0] for row in await cur.fetchall()}

    async def keys(self, key_ids: Iterable[str]) -> dict[str, KeyState]:
        """The current states of those of ``key_ids`` that exist: from the key cache table, or, for a key the
        projector has not written yet (created a moment ago), folded from the event store."""
        wanted = set(key_ids)
        found = await load_keys(self._conn, wanted)
        if missing := wanted - found.keys():
            cur = await self._conn.execute("SELECT stream_id, data::text FROM events WHERE stream_id = ANY(%s) "
                                           "ORDER BY stream_id, version", (list(missing),))
            streams: dict[str, list[str]] = {}
            for stream_id, data in await cur.fetchall():
                streams.setdefault(stream_id, []).append(data)
            for stream_id, events in streams.items():
                if (state := fold(decode_event(data) for data in events)) is not None:
                    found[stream_id] = state
        return found

    async def profiles(self, key_ids: Iterable[str]) -> dict[str, Profile]:
        """The stored profiles of ``key_ids`` (a key without one is absent)."""
        cur = await self._conn.execute("SELECT key_id, profile::text FROM watch_profiles WHERE key_id = ANY(%s)",
                                       (list(key_ids),))
        return {key_id: _profile.decode(text) for key_id, text in await cur.fetchall()}

    async def findings(self, finding_ids: Iterable[str]) -> dict[str, Finding]:
        """The stored findings among ``finding_ids``."""
        return await load_findings(self._conn, finding_ids)

    async def save(self, profiles: Mapping[str, Profile], findings: Iterable[Finding], respond: Collection[str],
                   notices: Iterable[Notice]) -> None:
        """Write the profiles and findings (``respond``: findings whose key is now due to be revoked) and
        append the notices."""
        if profiles:
            await self._conn.execute(_SAVE_PROFILES, (list(profiles), [_encode(p).decode() for p in profiles.values()]))
        await save_findings(self._conn, findings, respond)
        for notice in notices:
            await append_notice(self._conn, notice)


class Rebuild(WatchTransaction):
    """The rebuild's transaction: one snapshot of the usage table, and the findings and profiles replaced."""

    async def usage(self, page: int = 5000) -> AsyncIterator[list[UsageEvent]]:
        """Every stored usage event in time order, ``page`` at a time."""
        async with self._conn.cursor(name="watch_rebuild") as cur:
            await cur.execute(_USAGE)
            while rows := await cur.fetchmany(page):
                yield [UsageEvent(row[0].hex, *row[1:]) for row in rows]

    async def replace(self, profiles: Mapping[str, Profile], findings: Iterable[Finding]) -> int:
        """Replace every profile and finding; a finding that was there keeps its status and automatic
        response. Every batch of the usage table counts as applied. The number of findings."""
        cur = await self._conn.execute("SELECT id::text, status, acknowledged_at, acknowledged_by, response "
                                       "FROM findings")
        kept = {row[0]: row[1:] for row in await cur.fetchall()}
        rebuilt = [msgspec.structs.replace(f, status=kept[f.id][0], acknowledged_at=kept[f.id][1],
                                           acknowledged_by=kept[f.id][2]) if f.id in kept else f for f in findings]
        await self._conn.execute("DELETE FROM findings WHERE kind <> ALL(%s)", (list(REPORTED_KINDS),))
        await self._conn.execute("DELETE FROM watch_profiles")
        await self.save(profiles, rebuilt, (), ())
        responses = [(f.id, kept[f.id][3]) for f in rebuilt if f.id in kept and kept[f.id][3] is not None]
        await self._conn.execute(_RESPONSES, ([i for i, _ in responses], [r for _, r in responses]))
        await self._conn.execute("INSERT INTO watch_batches (batch_id) SELECT batch_id FROM usage_batches "
                                 "ON CONFLICT DO NOTHING")
        return len(rebuilt)


class WatchStore:
    """The watch's tables in one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[WatchTransaction]:
        """A transaction of the watch (committed when the block ends without an error)."""
        async with self._db._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            yield WatchTransaction(conn)

    @asynccontextmanager
    async def rebuilding(self) -> AsyncIterator[Rebuild]:
        """The rebuild's transaction, on one snapshot, with the watch held off until it ends."""
        async with self._db._dedicated() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))  # before the snapshot is taken
            try:
                async with conn.transaction():
                    await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    yield Rebuild(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))

    async def prune(self, days: int = 2) -> int:
        """Forget the batches applied more than ``days`` ago (acked long since: none comes again); how many."""
        async with self._db._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            cur = await conn.execute("DELETE FROM watch_batches WHERE applied_at < now() - make_interval(days => %s)",
                                     (days,))
            return cur.rowcount
