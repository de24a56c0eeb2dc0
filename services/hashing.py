"""argon2id hashing of secrets, off the event loop and with bounded concurrency."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.config import Settings


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
        self._pool = ThreadPoolExecutor(settings.argon2_max_concurrency, thread_name_prefix="argon2")

    async def hash(self, secret: str) -> str:
        """The argon2id hash string of ``secret`` (computed off the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._hasher.hash, secret)

    async def verify(self, secret_hash: str, secret: str) -> bool:
        """Whether ``secret`` matches ``secret_hash`` (constant-time inside argon2)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._check, secret_hash, secret)

    def _check(self, secret_hash: str, secret: str) -> bool:
        try:
            return bool(self._hasher.verify(secret_hash, secret))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
