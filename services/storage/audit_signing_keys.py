"""The keys that sign audit export manifests (table ``audit_signing_keys``, append-only).

The newest row signs. The first process that needs a key when there is none makes one, under an
advisory lock, so replicas starting together agree on a single key. Rows are never changed or
removed, so the public key of every manifest ever signed can still be looked up by its id.

The private key never travels in a statement or a parameter (which ``log_statement`` would write to
the server log): Postgres draws the 32-byte seed itself (SHA-256 of three ``gen_random_uuid()``, 366
random bits), hands it back as a result, keeps it in a transaction-local setting, and the INSERT takes
it from there; only the key id and the public key, derived here, are sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from keyledger.services.storage.database import Database

SIGNING_KEY_LOCK = 0x6B6C736B  # advisory lock held while the first key is made
_COLUMNS = "key_id, public_key, private_key, created_at"
_NEWEST = f"SELECT {_COLUMNS} FROM audit_signing_keys ORDER BY created_at DESC, key_id DESC LIMIT 1"
_DRAW = ("SELECT set_config('keyledger.new_audit_key', encode(sha256(uuid_send(gen_random_uuid()) "
         "|| uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())), 'hex'), true)")
_INSERT = ("INSERT INTO audit_signing_keys (key_id, private_key, public_key) "
           f"VALUES (%s, decode(current_setting('keyledger.new_audit_key'), 'hex'), %s) RETURNING {_COLUMNS}")
_FORGET = "SELECT set_config('keyledger.new_audit_key', '', true)"
_PUBLIC = "SELECT public_key FROM audit_signing_keys WHERE key_id = %s"


@dataclass(frozen=True)
class StoredSigningKey:
    """One row. ``private_key`` (the 32-byte Ed25519 seed) is left out of the repr, so no log shows it."""

    key_id: str
    public_key: bytes
    private_key: bytes = field(repr=False)
    created_at: datetime


NewKey = Callable[[bytes], tuple[str, bytes]]  # a new key's 32-byte seed → (key_id, public_key)


class SigningKeyTable:
    """``audit_signing_keys``: the newest key (made first when there is none), public keys by id."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def newest_or_create(self, derive: NewKey) -> StoredSigningKey:
        """The key that signs now; when there is none, one is made first (one process at a time) from a seed
        Postgres draws, ``derive(seed)`` giving its id and public key."""
        async with self._db._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SIGNING_KEY_LOCK,))
            row = await (await conn.execute(_NEWEST)).fetchone()
            if row is None:
                drawn = await (await conn.execute(_DRAW)).fetchone()
                assert drawn is not None
                key_id, public_key = derive(bytes.fromhex(drawn[0]))
                row = await (await conn.execute(_INSERT, (key_id, public_key))).fetchone()
                await conn.execute(_FORGET)
        assert row is not None
        return StoredSigningKey(str(row[0]), bytes(row[1]), bytes(row[2]), row[3])

    async def public_key(self, key_id: str) -> bytes | None:
        """The public key of ``key_id`` (any key ever made), or None when there is no such key."""
        async with self._db._connection() as conn:
            row = await (await conn.execute(_PUBLIC, (key_id,))).fetchone()
        return None if row is None else bytes(row[0])
