"""The watch role: usage batches from JetStream (a durable consumer of its own, beside the audit sink's)
through the rules into findings.

Per fetch, one transaction claims the batch ids (``watch_batches``), loads the profiles of the keys the
events concern, applies the events in time order, and writes the profiles, the findings and their
``key.finding`` notices; messages are acked only after the commit. A redelivered batch is claimed already and
skipped, so no event is ever counted twice, and a watch killed mid-batch loses nothing. Findings of a kind in
``KEYLEDGER_FINDINGS_AUTO_REVOKE`` make their key's revocation due in that transaction; it is done after the
commit (and retried until done), through the key command service, as actor ``watch``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection

import msgspec

from keyledger.domain.findings import Thresholds
from keyledger.domain.usage import UsageEvent, decode_batch
from keyledger.services.messaging.consume import Consumer, Delivery
from keyledger.services.messaging.usage import batch_id_of
from keyledger.services.periodic import every
from keyledger.services.storage.database import StorageError, retry_database
from keyledger.services.storage.findings import FindingTable
from keyledger.services.storage.watch_store import WatchStore
from keyledger.services.watch.judge import (
    KeyView,
    concerned_key,
    finding_ids,
    finding_notice,
    fold_matches,
    guessed_keys,
    match_events,
)

log = logging.getLogger("keyledger.watch")

Revoke = Callable[[str, str], Awaitable[bool]]
"""Revoke key ``key_id`` for ``reason``; True once it is revoked (now or before), False to try again later."""
PRUNE_SECONDS = 3600.0  # how often applied batches older than two days are forgotten


class WatchStats(msgspec.Struct, kw_only=True):
    """Counts since start."""

    events: int = 0  # usage events applied
    batches: int = 0  # batches applied
    duplicates: int = 0  # batches skipped: applied before
    malformed: int = 0  # messages dropped: undecodable
    findings: int = 0  # findings raised or grown
    notices: int = 0  # key.finding notices appended
    revoked: int = 0  # keys revoked automatically


class Batch(msgspec.Struct, frozen=True):
    """One usage batch and the message(s) that carried it in this fetch."""

    batch_id: uuid.UUID
    events: list[UsageEvent]
    deliveries: list[Delivery]


class Watch:
    """Applies each fetched set of usage batches in one transaction, then acks their messages."""

    def __init__(self, store: WatchStore, findings: FindingTable, consumer: Consumer, limits: Thresholds,
                 key_view: KeyView, revoke: Revoke | None = None, auto_revoke: Collection[str] = ()) -> None:
        self._store, self._findings, self._consumer = store, findings, consumer
        self._limits, self._key_view, self._revoke = limits, key_view, revoke
        self._auto_revoke = frozenset(auto_revoke)
        self.stats = WatchStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, riding out NATS and Postgres outages."""
        async def handle(deliveries: list[Delivery]) -> None:
            batches = await self.accept(deliveries)
            await retry_database(stop, lambda: self.commit(batches), "watch")
            await self._respond_safely()

        await self._respond_safely()  # revocations left due by an earlier run
        await asyncio.gather(self._consumer.run(stop, handle),
                             every(stop, PRUNE_SECONDS, self._store.prune, log, "forgetting old batches",
                                   first=True, retry=(StorageError,)))

    async def accept(self, deliveries: list[Delivery]) -> list[Batch]:
        """The batches the messages carry (one per batch id); malformed messages are dropped."""
        batches: dict[uuid.UUID, Batch] = {}
        for delivery in deliveries:
            try:
                events = decode_batch(delivery.data)
                if any(event.at.tzinfo is None for event in events):
                    raise ValueError("an event time has no time zone")
            except (msgspec.DecodeError, ValueError, OverflowError) as exc:
                self.stats.malformed += 1
                log.error("usage message (stream seq %s) is malformed, not watched: %s", delivery.seq,
                          type(exc).__name__)
                await delivery.term()
                continue
            batch_id = batch_id_of(delivery)
            if batch_id in batches:
                batches[batch_id].deliveries.append(delivery)
            else:
                batches[batch_id] = Batch(batch_id, events, [delivery])
        return list(batches.values())

    async def commit(self, batches: list[Batch]) -> None:
        """Apply the batches not applied before in one transaction, then ack every message."""
        if not batches:
            return
        limits = self._limits
        async with self._store.transaction() as tx:
            fresh = await tx.claim(batch.batch_id for batch in batches)
            events = sorted((event for batch in batches if batch.batch_id in fresh for event in batch.events),
                            key=lambda event: (event.at, event.id))
            guessed = guessed_keys(events)
            existing = await tx.keys(guessed) if guessed else {}
            profiles = await tx.profiles({key for event in events if (key := concerned_key(event))
                                          and (event.key_id is not None or key in existing)})
            matched = match_events(events, profiles, existing, limits)
            findings = await tx.findings(finding_ids(matched)) if matched else {}
            changes = fold_matches(matched, findings, limits)
            noticed = [change.after for change in changes.values() if change.noticed]
            wanted = {finding.key_id for finding in noticed} - set(existing)
            states = {**existing, **(await tx.keys(wanted) if wanted else {})}
            notices = [finding_notice(finding, states.get(finding.key_id), self._key_view) for finding in noticed]
            respond = {found for found, change in changes.items() if change.after.kind in self._auto_revoke}
            await tx.save(profiles, [change.after for change in changes.values()], respond, notices)
        self.stats.batches += len(fresh)
        self.stats.duplicates += len(batches) - len(fresh)
        self.stats.events += len(events)
        self.stats.findings += len(changes)
        self.stats.notices += len(notices)
        for change in changes.values():
            if change.noticed:
                found = change.after
                log.warning("finding %s (%s) for key %s: %s (count %d)", found.kind, found.severity, found.key_id,
                            found.subject or "-", found.count)
        for batch in batches:
            for delivery in batch.deliveries:
                await delivery.ack()  # committed already: a lost ack means a redelivery, skipped

    async def respond(self) -> None:
        """Revoke the keys of the findings whose automatic revocation is due."""
        if self._revoke is None:
            return
        for finding in await self._findings.due():
            if await self._revoke(finding.key_id, f"automatic: {finding.kind} finding {finding.id}"):
                await self._findings.responded(finding.id)
                self.stats.revoked += 1
                log.warning("key %s revoked automatically: %s finding %s", finding.key_id, finding.kind, finding.id)

    async def _respond_safely(self) -> None:
        try:
            await self.respond()
        except StorageError as exc:
            log.warning("automatic revocations not done yet (%s); will retry", exc)
