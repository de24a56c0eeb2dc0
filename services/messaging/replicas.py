"""Replica announcements on core NATS: each API replica says how far its key cache has read the store."""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
import nats.errors
from nats.aio.msg import Msg

from keyledger.services.messaging.connection import Bus

log = logging.getLogger("keyledger.replicas")


class Announcement(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One replica's position: every store event up to ``position`` is in its cache (-1: it is leaving).
    ``nudge``: this replica just committed events up to there; read the store now (not after the relay)."""

    replica: str
    position: int
    nudge: int = 0


_decode = msgspec.json.Decoder(Announcement).decode
_encode = msgspec.json.Encoder().encode


class ReplicaChannel:
    """Publishes this replica's announcements and hands every replica's (its own too) to ``on_heard``. Core
    NATS, no stream: an announcement only matters for a second, and a lost one is repeated by the next."""

    def __init__(self, bus: Bus, subject: str) -> None:
        self._bus, self._subject = bus, subject
        self._listening = False

    @property
    def connected(self) -> bool:
        """Whether NATS is connected now."""
        return self._bus.is_connected

    async def listen(self, on_heard: Callable[[Announcement], None]) -> None:
        """Subscribe once (the client subscribes again by itself after every reconnection); a malformed
        message is logged and ignored."""
        if self._listening or not self._bus.is_connected:
            return

        async def heard(msg: Msg) -> None:
            try:
                announcement = _decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("a malformed replica announcement on %s: ignored", self._subject)
                return
            on_heard(announcement)

        try:
            await self._bus._nc.subscribe(self._subject, cb=heard)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.info("cannot listen to replica announcements yet (%s)", type(exc).__name__)
            return
        self._listening = True

    async def announce(self, replica: str, position: int, nudge: int = 0) -> None:
        """Publish (buffered: returns at once); nothing when NATS is away."""
        if not self._bus.is_connected:
            return
        try:
            await self._bus._nc.publish(self._subject, _encode(Announcement(replica, position, nudge)))
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            log.info("replica announcement not sent (%s)", type(exc).__name__)
