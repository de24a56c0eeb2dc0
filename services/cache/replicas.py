"""The roll of API replicas: how far each one's key cache has read the store, so that a command returns only
once every replica holds what it changed."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from keyledger.services.messaging.replicas import Announcement

log = logging.getLogger("keyledger.replicas")

HEARTBEAT = 0.5  # seconds between a replica's announcements when its position does not move
SILENT_AFTER = 4 * HEARTBEAT  # a replica not heard for this long is gone, or cut off from the bus
STORE_POLL_BOUND = 0.25  # a replica cut off from the bus reads the store every 50 ms: by then it holds an event
FORGET_AFTER = 15.0  # a replica not heard for this long leaves the roll (a killed one costs commands no more)


class Channel(Protocol):
    """Where announcements travel (``keyledger.services.messaging.replicas.ReplicaChannel``)."""

    async def listen(self, on_heard: Callable[[Announcement], None]) -> None: ...

    async def announce(self, replica: str, position: int, nudge: int = 0) -> None: ...


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ReplicaRoll:
    """Announces this replica's cache position (at once when it moves, else every ``HEARTBEAT``) and keeps
    every other replica's; :meth:`wait_for` waits until each has read the store up to a position.

    The guarantee a command gets from :meth:`wait_for`: once it returns, every replica that answers verifies
    holds the command's events, or it will not answer VALID — a replica heard from recently has announced the
    position; one silent for ``SILENT_AFTER`` is dead or cut off from the bus, and then reads the store every
    50 ms (``STORE_POLL_BOUND`` covers it); one silent for ``FORGET_AFTER`` is no longer waited for (if it
    is alive but cut off from the bus that long, it may answer VALID for one store read, tens of
    milliseconds, after a command returned). Never longer than ``max_wait`` (the replicas'
    ``max_staleness``: a replica the store has not confirmed for that long answers UNAVAILABLE, not VALID)."""

    def __init__(self, channel: Channel, position: Callable[[], int], *, max_wait: float,
                 monotonic: Callable[[], float] = time.monotonic, member: bool = True) -> None:
        self._channel, self._position, self._monotonic = channel, position, monotonic
        self.max_wait = max_wait
        self.member = member  # False: waits for the replicas without being one (no cache: the CLI)
        self.replica = uuid.uuid4().hex
        self._peers: dict[str, tuple[int, float]] = {}  # replica -> (position, when heard)
        self._moved = asyncio.Event()  # this replica's position moved: announce now
        self._waiting: set[asyncio.Future[None]] = set()  # the waiting commands, woken when a position moves
        self.timeouts = 0  # waits that ended at max_wait with replicas still behind
        self.on_nudge: Callable[[int], None] | None = None  # another replica committed up to a position (the cache)

    def advanced(self) -> None:
        """This replica's cache read further (called by the cache; cheap)."""
        self._moved.set()

    def heard(self, announcement: Announcement) -> None:
        """Record another replica's announcement (position -1: it is leaving) and wake the waiters."""
        if announcement.replica == self.replica:
            return
        if announcement.nudge and self.on_nudge is not None:
            self.on_nudge(announcement.nudge)
        before = self._peers.get(announcement.replica)
        if announcement.position < 0:
            self._peers.pop(announcement.replica, None)
        else:
            self._peers[announcement.replica] = (announcement.position, self._monotonic())
        if before is not None and before[0] == announcement.position:
            return  # a heartbeat, or a nudge from a replica whose own position stayed: no waiter can finish on it
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_result(None)

    def behind(self, position: int, since: float) -> list[str]:
        """The replicas that may not hold ``position`` yet, for a wait that began at ``since``."""
        now = self._monotonic()
        pending = []
        for replica, (at, heard) in list(self._peers.items()):
            if now - heard > FORGET_AFTER:
                del self._peers[replica]
            elif at < position and not (now - heard > SILENT_AFTER and now - since >= STORE_POLL_BOUND):
                pending.append(replica)
        return pending

    async def wait_for(self, position: int) -> list[str]:
        """Wait until every replica holds ``position``; the replicas still behind after ``max_wait`` (logged).
        The others are nudged to read the store at once, rather than when the relay's message reaches them."""
        since = self._monotonic()
        if self._peers:  # a non-member nudges as one leaving (position -1): no replica starts waiting for it
            await self._channel.announce(self.replica, self._position() if self.member else -1, nudge=position)
        while pending := self.behind(position, since):
            remaining = since + self.max_wait - self._monotonic()
            if remaining <= 0:
                self.timeouts += 1
                log.warning("%d replica(s) did not confirm position %d within %.1f s; they answer UNAVAILABLE "
                            "rather than VALID until their store confirms them", len(pending), position,
                            self.max_wait)
                return pending
            await self._news(min(remaining, 0.1))  # 0.1 s: silent replicas time out
        return []

    async def _news(self, timeout: float) -> None:
        """Until a replica's position moves (or one leaves or joins), at most ``timeout`` seconds: a future and a
        timer per wait (no task, no event), since every waiting command waits again at each announcement."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(timeout, _release, waiter)
        self._waiting.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiting.discard(waiter)

    def __len__(self) -> int:
        return len(self._peers)

    async def run(self, stop: asyncio.Event) -> None:
        """Listen and announce until ``stop``; then say this replica is leaving (its waiters need not wait)."""
        while not stop.is_set():
            await self._channel.listen(self.heard)
            self._moved.clear()
            await self._channel.announce(self.replica, self._position())
            moved, stopped = asyncio.ensure_future(self._moved.wait()), asyncio.ensure_future(stop.wait())
            await asyncio.wait({moved, stopped}, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED)
            moved.cancel()
            stopped.cancel()
        await self._channel.announce(self.replica, -1)
