"""The watch role's worker, built from the settings: the rules' thresholds, the key view its notices carry, and
the automatic revocation (``KEYLEDGER_FINDINGS_AUTO_REVOKE``) done through the key command service as actor
``watch``, so that it is recorded like any revoke."""

from __future__ import annotations

import logging

from keyledger.domain.errors import DomainError, KeyNotFound, KeyRevokedError
from keyledger.domain.recorded import Metadata
from keyledger.services.bootstrap.roles import WATCH
from keyledger.services.bootstrap.runtime import Runtime
from keyledger.services.keys.service import KeyService
from keyledger.services.keys.views import key_view
from keyledger.services.messaging.connection import Bus
from keyledger.services.messaging.usage import usage_consumer
from keyledger.services.storage.findings import FindingTable
from keyledger.services.storage.watch_store import WatchStore
from keyledger.services.watch.watcher import Revoke, Watch

ACTOR = "watch"  # who the events of an automatic revocation name
log = logging.getLogger("keyledger.watch")


def revoker(keys: KeyService) -> Revoke:
    """Revoke a key for a finding, as actor ``watch``; a key revoked already (or unknown) counts as done, any
    other refusal (e.g. a concurrent change) is tried again later."""
    async def revoke(key_id: str, reason: str) -> bool:
        try:
            await keys.revoke(key_id, reason=reason, metadata=Metadata(actor=ACTOR))
        except (KeyRevokedError, KeyNotFound):
            pass
        except DomainError as exc:
            log.warning("key %s not revoked yet (%s); will retry", key_id, exc)
            return False
        return True
    return revoke


def watch_worker(rt: Runtime, bus: Bus) -> Watch:
    """The ``watch`` role's worker on ``rt``'s database, consuming usage batches from ``bus``."""
    settings = rt.settings
    return Watch(WatchStore(rt.db), FindingTable(rt.db),
                 usage_consumer(bus, settings, WATCH.consumer, WATCH.batch), settings.findings, key_view,
                 revoke=revoker(rt.key_service()), auto_revoke=settings.findings_auto_revoke)
