"""First start: a bootstrap admin key (on an empty store) and a verify credential (when there is none),
so the operator can create the real keys and services can call verify at once."""

from __future__ import annotations

import msgspec

from keyledger.domain.access import AccessEntry
from keyledger.domain.recorded import Metadata
from keyledger.services.keys.credentials import issue
from keyledger.services.keys.service import IssuedKey, KeyService
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import EventStore
from keyledger.services.storage.locks import BOOTSTRAP, exclusive
from keyledger.services.storage.verify_credentials import VerifyCredentials

BOOTSTRAP_ACCESS = (AccessEntry(resource="global", scopes=("admin:apikeys",)),)


class Bootstrapped(msgspec.Struct, frozen=True, kw_only=True):
    """What a first start created; the secrets exist only here (to be shown once)."""

    admin: IssuedKey | None = None
    verify_credential: tuple[str, str] | None = None  # (id, secret)


async def bootstrap(db: Database, store: EventStore, keys: KeyService) -> Bootstrapped:
    """On an empty store, create one global ``admin:apikeys`` key; when no verify credential exists at
    all, create one. An advisory lock makes API processes starting together create only one of each."""
    credentials = VerifyCredentials(db)
    async with exclusive(db, BOOTSTRAP):
        admin = None
        if await store.head_position() == 0:
            admin = await keys.create("bootstrap admin", access=BOOTSTRAP_ACCESS, metadata=Metadata(actor="bootstrap"))
        credential = None
        if not await credentials.listed():
            credential = await issue(credentials, "default", created_by="bootstrap")
        return Bootstrapped(admin=admin, verify_credential=credential)

