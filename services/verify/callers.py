"""Who may call ``POST /v1/verify``: services with a verify credential (or the static token, or an
``admin:apikeys`` key; open only when the operator says so). Credentials are issued like keys,
shown once, and kept as SHA-256 digests; every API process refreshes the active set often."""

from __future__ import annotations

import asyncio
import logging

from keyledger.domain.token import CREDENTIAL_PREFIX
from keyledger.services.hashing import credential_digest
from keyledger.services.periodic import every
from keyledger.services.storage.database import StorageError
from keyledger.services.storage.verify_credentials import VerifyCredentials

log = logging.getLogger("keyledger.verify_callers")


class VerifyCallers:
    """The active verify credentials of this process, refreshed every ``interval`` seconds (a revoked
    credential stops working everywhere within that time)."""

    def __init__(self, credentials: VerifyCredentials, interval: float = 2.0) -> None:
        self._credentials, self._interval = credentials, interval
        self._active: dict[str, str] = {}

    async def start(self) -> None:
        """Load the active credentials."""
        self._active = await self._credentials.active()

    def identify(self, presented: str) -> str | None:
        """``credential:<id>`` for an active credential's secret, else None (a dict lookup by digest)."""
        if not presented.startswith(CREDENTIAL_PREFIX + "_"):
            return None
        credential_id = self._active.get(credential_digest(presented))
        return f"credential:{credential_id}" if credential_id is not None else None

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh until ``stop``; a database outage keeps the last known set."""
        await every(stop, self._interval, self.start, log, "refreshing the verify credentials",
                    retry=(StorageError,))
