"""How secrets are kept and checked: argon2id for key secrets (slow on purpose, so off the event loop and
with bounded concurrency), SHA-256 for verify credentials (190 random bits need no slow hash). The only
argon2 importer; shared by the command side (create, rotate) and the verify side.

An adapter: may import domain, projections, observe and the kernel; no other adapter.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from keyledger.services.config import Settings
from keyledger.services.observe import metrics


def _lowest_priority() -> None:
    """Run this argon2 thread at nice 19: on Linux the nice value is per thread, so the event
    loop (and the server's I/O threads) keep the CPU when cold checks compete with warm traffic,
    and argon2 still gets every idle cycle."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not permitted: keep the default priority
        pass


def credential_digest(secret: str) -> str:
    """The stored form of a verify credential's secret (SHA-256, hex)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SecretHasher:
    """Hashes and verifies secrets with argon2id in a small thread pool.

    The pool size bounds how much argon2 work runs at once, so a flood of wrong secrets
    queues behind itself instead of taking every core.
    """

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self._pool = ThreadPoolExecutor(settings.argon2_max_concurrency, thread_name_prefix="argon2",
                                        initializer=_lowest_priority)

    async def hash(self, secret: str) -> str:
        """The argon2id hash string of ``secret`` (computed off the event loop)."""
        with metrics.ARGON2_WAIT.time():
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._hasher.hash, secret)

    async def verify(self, secret_hash: str, secret: str) -> bool:
        """Whether ``secret`` matches ``secret_hash`` (constant-time inside argon2)."""
        with metrics.ARGON2_WAIT.time():
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._check, secret_hash, secret)

    def _check(self, secret_hash: str, secret: str) -> bool:
        try:
            return bool(self._hasher.verify(secret_hash, secret))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class Argon2Queue:
    """How much argon2 work may wait at once: ``max_pending`` in all, and at most a quarter of that
    for one caller. Verify's cold checks and create/rotate hashing count against the same bound,
    so no caller (not even an admin creating keys in a loop) can starve the others."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending, self.caller_quota = max_pending, max(1, max_pending // 4)
        self.pending = 0
        self._by_caller: dict[str, int] = {}

    def admit(self, caller: str) -> str | None:
        """Take a place for ``caller`` (then :meth:`release` it); else why not (nothing taken)."""
        if self.pending >= self.max_pending:
            metrics.ARGON2_REFUSED.inc()
            return "too much argon2 work in progress; retry"
        if self._by_caller.get(caller, 0) >= self.caller_quota:
            metrics.ARGON2_REFUSED.inc()
            return "too much argon2 work from this caller; retry"
        self.pending += 1
        self._by_caller[caller] = self._by_caller.get(caller, 0) + 1
        return None

    def release(self, caller: str) -> None:
        """Give back the place :meth:`admit` took."""
        self.pending -= 1
        if self._by_caller[caller] <= 1:
            del self._by_caller[caller]
        else:
            self._by_caller[caller] -= 1
