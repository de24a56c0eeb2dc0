"""The in-memory key cache of an API process: starts from Postgres, follows JetStream live."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from keyledger.domain.events import KeyCreated, KeyRevoked
from keyledger.domain.key import KeyState
from keyledger.domain.recorded import RecordedEvent
from keyledger.projections.compact_keys import CompactKeys
from keyledger.projections.imported import ImportedIndex, note_imported
from keyledger.projections.key_cache import Outcome, apply_at
from keyledger.services.messaging.feed import EventFeed
from keyledger.services.periodic import every
from keyledger.services.storage.database import StorageError
from keyledger.services.storage.event_store import EventStore
from keyledger.services.storage.key_cache_table import KeyCacheTable

log = logging.getLogger("keyledger.live_cache")
CUT_OFF_POLL_SECONDS = 0.05  # how often a replica cut off from NATS reads the store
_PAGE = 1000  # events read from the store at once


class LiveKeyCache:
    """Every key's state by id: O(1) lookup, updated as events arrive over JetStream. Recently used keys are
    KeyState objects in a dict (the warm path's one lookup), the others compact bytes (projections.compact_keys)."""

    def __init__(self, store: EventStore, table: KeyCacheTable, feed: EventFeed,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store, self._table, self._feed, self._monotonic = store, table, feed, monotonic
        self._keys = CompactKeys()
        self._hot = self._keys.hot  # recently used keys' states: what a warm verify finds
        self._imported: dict[str, str] = {}  # imported keys by the start of their SHA-256 (projections.imported)
        self.position = 0  # highest global position applied
        self.stream_seq = 0  # JetStream sequence of the last message seen
        self.forged = 0  # messages claiming events the store does not hold
        self.tailed = 0  # the store's events up to here have been read (gapless)
        self.confirmed_at: float | None = None  # monotonic time the store last confirmed this cache is current
        self.unreachable_since: float | None = None  # the store stopped answering then (None: it answers)
        self.behind = False  # the bus announced an event the store has not confirmed yet
        self._asked_since: float | None = None  # the store has not answered since then (a read pending or failed)
        self._reading = asyncio.Lock()  # one store reader at a time
        self.on_advance: Callable[[], None] | None = None  # told whenever ``tailed`` moves (the replica roll)
        self._nudged_to = 0  # another replica said the store holds events up to here
        self._nudge: asyncio.Task[None] | None = None

    @property
    def following(self) -> bool:
        """Whether this cache follows the bus (a subscription is in place)."""
        return self._feed.following

    @property
    def store_reachable(self) -> bool:
        """Whether the event store answered the last read."""
        return self.unreachable_since is None

    def get(self, key_id: str) -> KeyState | None:
        """The key's current state, or None if unknown."""
        state = self._hot.get(key_id)
        return state if state is not None else self._keys.use(key_id)

    def imported(self, lookup: str) -> KeyState | None:
        """The imported key whose source's SHA-256 starts with the 16 hex digits ``lookup``, or None."""
        key_id = self._imported.get(lookup)
        return self.get(key_id) if key_id is not None else None

    def __len__(self) -> int:
        return len(self._keys)

    def states(self, organization_id: str | None = None) -> list[KeyState]:
        """A snapshot of every key's state, or of one organization's keys (cold ones decoded for it, and not
        kept)."""
        return list(self._keys.states(organization_id))

    def sorted_ids(self, organization_id: str | None) -> list[str]:
        """The ids of the organization's keys (None: every key's) in order, without decoding any key's state
        (kept up to date as keys are created; do not change the list)."""
        return self._keys.sorted_ids(organization_id)

    def peek(self, key_id: str) -> KeyState | None:
        """The key's current state, or None; a cold key is decoded and stays cold (listing, not verifying)."""
        state = self._hot.get(key_id)
        return state if state is not None else self._keys.get(key_id)

    def apply_local(self, recorded: list[RecordedEvent]) -> None:
        """Apply events read from the store, or that this process just appended (before JetStream
        brings them back).

        The process that revoked or rotated a key must never again accept the old secret,
        not even for the milliseconds the round trip through the relay takes.
        """
        for event in recorded:
            if apply_at(self._keys, event.event, event.version) is not Outcome.GAP:  # applied, or already held
                self.position = max(self.position, event.global_position)
                if isinstance(event.event, KeyCreated):
                    note_imported(self._imported, self._keys[event.stream_id])

    async def start(self) -> None:
        """Load the Postgres read model, then follow the stream from the message after its checkpoint
        (when NATS is away, the store alone until it answers: ``resubscribe`` is called then)."""
        keys, imported = CompactKeys(), ImportedIndex()

        def hold(state: KeyState) -> None:
            keys.put_cold(state)
            note_imported(imported, state)

        self.position, self.stream_seq = await self._table.load_into(hold)
        self._keys, self._hot, self._imported = keys, keys.hot, imported
        self.tailed = self.position
        if self._feed.connected:
            await self.resubscribe()
        else:
            log.warning("NATS is unreachable: following the event store alone until it answers")

    async def resubscribe(self) -> None:
        """(Re)start following the stream after the last message seen: at start and whenever the NATS
        connection comes back (the ordered consumer lives in server memory and is gone after a restart)."""
        await self._feed.follow(self.stream_seq, self._on_event)

    async def stop(self) -> None:
        """Stop following the stream."""
        await self._feed.stop()

    async def follow_store(self, stop: asyncio.Event, interval: float = 0.5,
                           cut_off_interval: float = CUT_OFF_POLL_SECONDS) -> None:
        """Also read the event store itself every ``interval`` seconds (one cheap query when nothing is
        new), every ``cut_off_interval`` while NATS is away: revocations arrive even then (and this
        replica cannot tell the others that it holds them: their commands wait a moment for it, see
        ``keyledger.services.cache.replicas``); ``confirmed_at`` says when the store last confirmed that
        nothing is missing."""
        def pause() -> float:
            connected = self._feed is not None and self._feed.connected
            return interval if connected else min(interval, cut_off_interval)

        await every(stop, pause, self.catch_up_with_store, log, "following the event store", first=True,
                    retry=(StorageError,))

    async def catch_up_with_store(self, needed: int = 0) -> None:
        """Apply every event the store holds beyond what was read from it, then mark the cache confirmed.
        One reader at a time (the poll and the bus's wake-ups share it), so ``tailed`` only moves on.
        ``needed``: the read is only wanted up to that position (a message, a nudge): when the reader before
        got that far while this one waited for it, this one reads nothing (the poll still confirms)."""
        asked = self._monotonic()
        if self._asked_since is None:
            self._asked_since = asked
        async with self._reading:
            if needed and self.tailed >= needed:
                # nothing asked of the store; ``_asked_since`` stays until a read answers, since a reader that
                # came later (the poll) may be waiting behind this one with it as its question's time: clearing
                # it would leave a store outage unnoticed by :meth:`outage` (the in-process verifier then said
                # UNAVAILABLE where replicas said VALID)
                return
            try:
                # a page shorter than asked for was everything the store held: no second read to learn that
                # (positions become visible in commit order, so none below the last can appear later)
                while page := await self._store.read_page(self.tailed, _PAGE):
                    self.apply_local(page)
                    self.tailed = page[-1].global_position
                    if self.on_advance is not None:
                        self.on_advance()
                    if len(page) < _PAGE:
                        break
            except StorageError:
                if self.unreachable_since is None:
                    self.unreachable_since = asked  # it has not answered since then
                raise
            self.confirmed_at, self.unreachable_since, self._asked_since = self._monotonic(), None, None
            self.behind = False

    def nudge(self, position: int) -> None:
        """Another replica committed events up to ``position``: read the store now (it is waiting for this
        cache to hold them). Whoever can publish a nudge can only make this cache read the store, one
        reader at a time."""
        self._nudged_to = max(self._nudged_to, position)
        if self._nudged_to > self.tailed and (self._nudge is None or self._nudge.done()):
            self._nudge = asyncio.ensure_future(self._read_nudged())

    async def _read_nudged(self) -> None:
        while self.tailed < self._nudged_to:
            before = self.tailed
            try:
                await self.catch_up_with_store(self._nudged_to)
            except StorageError as exc:
                log.info("a nudged read of the event store failed (%s)", exc)
                return
            if self.tailed == before:  # nothing more to read (a nudge beyond the store's head): the poll goes on
                return

    def is_current(self, max_staleness: float, bus_connected: bool = False) -> bool:
        """Whether this cache may answer: the store confirmed within ``max_staleness`` seconds that it
        misses nothing (always, when ``max_staleness`` is 0: the operator chose availability), or the
        store has been unreachable since a moment this cache was current and the bus, connected, has
        announced nothing the cache lacks (:meth:`outage`)."""
        if max_staleness <= 0:
            return True
        if self.confirmed_at is not None and self._monotonic() - self.confirmed_at <= max_staleness:
            return True
        return self.outage(max_staleness, bus_connected)

    def outage(self, max_staleness: float, bus_connected: bool) -> bool:
        """Serving through a store outage: every command fails while the store is down, so no key can be
        revoked meanwhile; what a replica cut off from a store that others still reach would miss, the
        relay announces on the bus, and such an announcement (``behind``) ends this at once. It needs the
        bus connected, and the store to have gone away while this cache was current."""
        since = self._asked_since
        if since is None or self.confirmed_at is None or self.behind or not bus_connected:
            return False
        return since - self.confirmed_at <= max_staleness

    def _version_of(self, key_id: str) -> int:
        current = self._keys.get(key_id)
        return current.version if current is not None else 0

    async def lag(self) -> int:
        """How many events the store holds beyond what this cache has applied."""
        return max(0, await self._store.head_position() - self.position)

    async def _on_event(self, claimed: RecordedEvent, stream_seq: int) -> None:
        """A message only wakes the store follower: what is applied is what the store holds. Whoever can
        publish on the bus cannot grant a scope or replace a hash, nor make the real next version be
        skipped as a duplicate: a claim the store does not hold is logged, counted (``forged``) and
        changes nothing."""
        self.stream_seq = max(self.stream_seq, stream_seq)
        if claimed.version <= self._version_of(claimed.stream_id):
            return  # a redelivery (or a claim about the past): nothing new to read
        self.behind = True  # until the store confirms what it holds: no serving through an outage meanwhile
        try:
            await self.catch_up_with_store(claimed.global_position)
        except StorageError as exc:
            if isinstance(claimed.event, KeyRevoked) and claimed.version == self._version_of(claimed.stream_id) + 1:
                self.apply_local([claimed])  # unconfirmed, but a revoke can only take access away
                log.warning("applied an unconfirmed revoke of %s (the store is unreachable: %s)",
                            claimed.stream_id, exc)
            else:
                log.warning("cannot confirm an event of %s with the store (%s); not applied", claimed.stream_id, exc)
            return
        if claimed.version > self._version_of(claimed.stream_id):  # everything the store holds is applied
            self.forged += 1
            log.warning("a message on the bus claims version %d of %s (event %s), which the store does not hold: "
                        "ignored", claimed.version, claimed.stream_id, claimed.event_id)
