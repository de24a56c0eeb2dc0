"""Re-hashing an imported key's secret with argon2id on its first successful verify (``key.rehashed``).

The verify answer does not wait: the argon2 hash and the append run beside, one per key at a time in this
process, within the process's argon2 bound. The event goes through the event store like any command
(optimistic concurrency on the key's version): when two replicas re-hash the same key at once, the second
append conflicts and is dropped (the first re-hash won; both hashes are of the same secret). A re-hash that
fails for any other reason (store away, argon2 queue full) is logged and tried again by the next verify,
since the key still holds its SHA-256 until a ``key.rehashed`` is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from keyledger.domain.errors import ConcurrencyError, DomainError
from keyledger.domain.importing import RehashKey, decide_rehash
from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.clock import Clock
from keyledger.services.hashing import Argon2Queue, SecretHasher
from keyledger.services.storage.database import StorageError
from keyledger.services.storage.event_store import EventStore

log = logging.getLogger("keyledger.rehash")
ACTOR = "keyledger:rehash"


class Rehasher:
    """Called by the verifier with an imported key whose SHA-256 matched (:meth:`__call__`)."""

    def __init__(self, store: EventStore, hasher: SecretHasher, clock: Clock, queue: Argon2Queue,
                 on_events: Callable[[list[RecordedEvent]], None] | None = None) -> None:
        self._store, self._hasher, self._clock, self._queue = store, hasher, clock, queue
        self._on_events = on_events  # the live cache applying its own writes at once
        self._running: dict[str, asyncio.Task[None]] = {}
        self.rehashed = 0  # appended by this process
        self.lost_races = 0  # another replica's re-hash came first

    def __call__(self, state: KeyState, presented: str) -> None:
        """Start re-hashing ``state``'s secret (``presented``, which matched its SHA-256) unless this process
        already is."""
        if state.key_id in self._running:
            return
        self._running[state.key_id] = asyncio.ensure_future(self._rehash(state, presented))

    async def _rehash(self, state: KeyState, presented: str) -> None:
        try:
            if self._queue.admit(ACTOR) is not None:
                log.info("argon2 is busy: the re-hash of %s waits for its next verify", state.key_id)
                return
            try:
                secret_hash = await self._hasher.hash(presented)
            finally:
                self._queue.release(ACTOR)
            events = decide_rehash(state, RehashKey(key_id=state.key_id, secret_hash=secret_hash), self._clock())
            recorded = await self._store.append(state.key_id, state.version, events, Metadata(actor=ACTOR))
            self.rehashed += 1
            if self._on_events is not None:
                self._on_events(recorded)
        except ConcurrencyError:
            self.lost_races += 1  # re-hashed by another replica, or the key changed: the next verify sees which
            log.info("the re-hash of %s met a newer version of the key (another replica's re-hash or a change)",
                     state.key_id)
        except (StorageError, DomainError) as exc:
            log.warning("could not re-hash %s (%s); the next verify tries again", state.key_id, exc)
        except Exception:  # never lost silently: said, and retried by the next verify
            log.exception("re-hashing %s failed; the next verify tries again", state.key_id)
        finally:
            self._running.pop(state.key_id, None)

    async def close(self) -> None:
        """Wait for the re-hashes under way (at shutdown)."""
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
