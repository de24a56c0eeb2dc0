"""Every owner's shared limits in memory, in every API process: verify reads them with a dict lookup (no
Postgres round trip). The process that changes an owner holds the change at once (:meth:`OwnerDirectory.note`);
the others follow ``owners.seq`` (:meth:`OwnerDirectory.run`, every ``interval`` seconds)."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import msgspec

from keyledger.domain.owners import OwnerLimits
from keyledger.services.periodic import every
from keyledger.services.storage.database import StorageError
from keyledger.services.verify.credits import CreditDecision
from keyledger.services.verify.throttles import RateDecision

log = logging.getLogger("keyledger.owners")


class OwnerDecision(msgspec.Struct, frozen=True, gc=False):
    """What a verify did with its key's owner's shared limits: its rate-limit decision and credits (each None
    when the owner has none, or the verify was refused before them)."""

    owner_id: str
    rate: RateDecision | None
    credits: CreditDecision | None


class OwnerSource(Protocol):
    """Where owners are stored (``services.storage.owners.OwnersTable``)."""

    async def changed_since(self, seq: int, limit: int = 1000) -> list[tuple[OwnerLimits, int]]: ...


class OwnerDirectory:
    """(organization, owner id) → the owner's limits, as of ``seq``."""

    def __init__(self, source: OwnerSource, interval: float = 0.5, away_interval: float = 5.0) -> None:
        self._source, self._interval, self._away_interval = source, interval, away_interval
        self._away = False  # the last refresh failed: ask less often, leaving the pool to the requests
        self._owners: dict[tuple[str, str], OwnerLimits] = {}
        self.seq = 0

    def get(self, organization_id: str, owner_id: str) -> OwnerLimits | None:
        """The owner's limits (None: it has none)."""
        return self._owners.get((organization_id, owner_id))

    def note(self, owner: OwnerLimits) -> None:
        """Hold ``owner`` as it is now (a newer version replaces an older one, never the reverse)."""
        key = (owner.organization_id, owner.owner_id)
        held = self._owners.get(key)
        if held is None or held.version < owner.version:
            self._owners[key] = owner

    async def refresh(self) -> None:
        """Take every owner changed since the last refresh."""
        while changed := await self._source.changed_since(self.seq):
            for owner, seq in changed:
                self.note(owner)
                self.seq = max(self.seq, seq)

    async def _follow(self) -> None:
        try:
            await self.refresh()
        except StorageError:
            self._away = True
            raise
        self._away = False

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the owners until ``stop``: every ``interval`` seconds, every ``away_interval`` while Postgres
        does not answer (so that this loop does not compete with requests for the pool as it reconnects)."""
        await every(stop, lambda: self._away_interval if self._away else self._interval, self._follow, log,
                    "following owners", retry=(StorageError,))
