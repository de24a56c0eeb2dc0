"""``verify_credentials``: the services allowed to call ``POST /v1/verify`` (SHA-256 of each secret)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.services.storage.database import Database


class VerifyCredential(msgspec.Struct, frozen=True, kw_only=True):
    """One credential as listed (never its secret)."""

    id: str
    name: str
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None


class VerifyCredentials:
    """Create, list and revoke credentials; the active ones' hashes for the API processes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, credential_id: str, name: str, secret_sha256: str, created_by: str | None) -> None:
        """Store a new credential (its secret's SHA-256 only)."""
        async with self._db._connection() as conn:
            await conn.execute("INSERT INTO verify_credentials (id, name, secret_sha256, created_by) "
                               "VALUES (%s, %s, %s, %s)", (credential_id, name, secret_sha256, created_by))

    async def listed(self) -> list[VerifyCredential]:
        """Every credential, oldest first."""
        async with self._db._connection() as conn:
            rows = await (await conn.execute("SELECT id, name, created_at, created_by, revoked_at "
                                             "FROM verify_credentials ORDER BY created_at, id")).fetchall()
        return [VerifyCredential(id=r[0], name=r[1], created_at=r[2], created_by=r[3], revoked_at=r[4]) for r in rows]

    async def revoke(self, credential_id: str) -> bool:
        """Revoke a credential for good; False when there is no active one with that id."""
        async with self._db._connection() as conn:
            cur = await conn.execute("UPDATE verify_credentials SET revoked_at = now() "
                                     "WHERE id = %s AND revoked_at IS NULL", (credential_id,))
            return cur.rowcount == 1

    async def active(self) -> dict[str, str]:
        """``secret SHA-256 (hex) → credential id`` of every credential not revoked."""
        async with self._db._connection() as conn:
            rows = await (await conn.execute(
                "SELECT secret_sha256, id FROM verify_credentials WHERE revoked_at IS NULL")).fetchall()
        return {digest: credential_id for digest, credential_id in rows}
