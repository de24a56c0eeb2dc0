"""``keyledger serve``: migrate, create the bootstrap admin key once, and serve the API with granian."""

from __future__ import annotations


import psycopg

from keyledger.domain.access import AccessEntry
from keyledger.domain.recorded import Metadata
from keyledger.services.keys.service import IssuedKey
from keyledger.services.runtime import Runtime

_BOOTSTRAP_LOCK = 0x6B62
BOOTSTRAP_ACCESS = (AccessEntry(resource="global", scopes=("admin:apikeys",)),)


async def bootstrap_admin(runtime: Runtime) -> IssuedKey | None:
    """On an empty store, create one global ``admin:apikeys`` key; None if the store has events.

    A session advisory lock makes API processes starting together create only one.
    """
    async with await psycopg.AsyncConnection.connect(runtime.database_url, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_BOOTSTRAP_LOCK,))
        try:
            if await runtime.store.head_position() > 0:
                return None
            return await runtime.keys.create("bootstrap admin", access=BOOTSTRAP_ACCESS,
                                             metadata=Metadata(actor="bootstrap"))
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_BOOTSTRAP_LOCK,))
