"""The audit notary on in-memory stores (no Postgres): for route and CLI tests."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from keyledger.services.audit.notary import AuditNotary
from keyledger.services.audit.signing import SigningKey
from keyledger.services.storage.audit_export_anchors import ExportAnchor
from keyledger.services.storage.audit_signing_keys import NewKey, StoredSigningKey


class MemorySigningKeys:
    """``audit_signing_keys`` in a list: the last one signs."""

    def __init__(self) -> None:
        self.rows: list[StoredSigningKey] = []

    async def newest_or_create(self, derive: NewKey) -> StoredSigningKey:
        if not self.rows:
            seed = os.urandom(32)
            key_id, public_key = derive(seed)
            self.rows.append(StoredSigningKey(key_id, public_key, seed, datetime.now(UTC)))
        return self.rows[-1]

    async def public_key(self, key_id: str) -> bytes | None:
        return next((row.public_key for row in self.rows if row.key_id == key_id), None)

    def add(self, key: SigningKey) -> None:
        """A newer key (as a rotation would leave it)."""
        self.rows.append(StoredSigningKey(key.key_id, key.public.raw, key.seed(), datetime.now(UTC)))


class MemoryAnchors:
    """``audit_export_anchors`` in a list."""

    def __init__(self) -> None:
        self.anchors: list[ExportAnchor] = []

    async def record(self, anchor: ExportAnchor) -> None:
        self.anchors.append(anchor)


def memory_notary(configured: SigningKey | None = None) -> AuditNotary:
    """A notary whose key is made in memory on first use (or is ``configured``)."""
    return AuditNotary(MemorySigningKeys(), MemoryAnchors(), configured)
