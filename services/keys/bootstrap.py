"""The bootstrap admin key: created once, on an empty store, so the operator can create the real keys."""

from __future__ import annotations

from keyledger.domain.access import AccessEntry
from keyledger.domain.recorded import Metadata
from keyledger.services.keys.service import IssuedKey, KeyService
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import EventStore
from keyledger.services.storage.locks import BOOTSTRAP, exclusive

BOOTSTRAP_ACCESS = (AccessEntry(resource="global", scopes=("admin:apikeys",)),)


async def bootstrap_admin(db: Database, store: EventStore, keys: KeyService) -> IssuedKey | None:
    """On an empty store, create one global ``admin:apikeys`` key; None if the store has events.

    An advisory lock makes API processes starting together create only one.
    """
    async with exclusive(db, BOOTSTRAP):
        if await store.head_position() > 0:
            return None
        return await keys.create("bootstrap admin", access=BOOTSTRAP_ACCESS, metadata=Metadata(actor="bootstrap"))
