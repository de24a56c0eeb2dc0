"""The server's side of signed exports: the key that signs manifests, and the record of every export.

The signing key is ``KEYLEDGER_AUDIT_SIGNING_KEY`` when set (never stored), else the newest key in
``audit_signing_keys``, made there on first use; every replica on one database shares it. A process
reads it once and keeps it (a key added later is used after a restart).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from keyledger.services.audit.signing import PublicKey, SigningKey
from keyledger.services.config import Settings
from keyledger.services.storage.audit_export_anchors import ExportAnchor, ExportAnchors
from keyledger.services.storage.audit_signing_keys import NewKey, SigningKeyTable, StoredSigningKey
from keyledger.services.storage.database import Database


class KeyStore(Protocol):
    """Where signing keys are kept (``SigningKeyTable``, or an in-memory fake)."""

    async def newest_or_create(self, derive: NewKey) -> StoredSigningKey:
        """The key that signs now; when there is none, one is made from a fresh seed (``derive(seed)`` gives
        its id and public key)."""
        ...

    async def public_key(self, key_id: str) -> bytes | None:
        """The public key of ``key_id``, or None."""
        ...


class AnchorLog(Protocol):
    """Where each export's chain head is recorded (``ExportAnchors``, or an in-memory fake)."""

    async def record(self, anchor: ExportAnchor) -> None:
        """Keep ``anchor``."""
        ...


def _identify(seed: bytes) -> tuple[str, bytes]:
    """The id and public key of the key with this seed."""
    key = SigningKey.from_seed(seed)
    return key.key_id, key.public.raw


class AuditNotary:
    """Signs export manifests with the server's key, serves its public keys, records each export."""

    def __init__(self, keys: KeyStore, anchors: AnchorLog, configured: SigningKey | None = None) -> None:
        self._keys, self._anchors, self._current = keys, anchors, configured
        self._lock = asyncio.Lock()

    async def signing_key(self) -> SigningKey:
        """The key that signs this process's exports (made in Postgres on first use)."""
        if self._current is None:
            async with self._lock:
                if self._current is None:
                    stored = await self._keys.newest_or_create(_identify)
                    self._current = SigningKey.from_seed(stored.private_key)
        return self._current

    async def public_key(self, key_id: str | None = None) -> PublicKey | None:
        """The public key of ``key_id`` (default: the key that signs now); None for a key never made here."""
        current = await self.signing_key()
        if key_id is None or key_id == current.key_id:
            return current.public
        raw = await self._keys.public_key(key_id)
        return None if raw is None else PublicKey(raw)

    async def record(self, anchor: ExportAnchor) -> None:
        """Keep one export's chain head."""
        await self._anchors.record(anchor)


def notary_for(db: Database, settings: Settings) -> AuditNotary:
    """The notary of a process on ``db``: the configured key, else the one kept in Postgres."""
    configured = settings.audit_signing_key
    return AuditNotary(SigningKeyTable(db), ExportAnchors(db),
                       None if configured is None else SigningKey.from_base64(configured.reveal()))
