"""A real argon2id hasher with the cheapest parameters, counting its work (tests assert on it)."""

from __future__ import annotations

from keyledger.services.config import Settings
from keyledger.services.hashing import SecretHasher


class CountingHasher(SecretHasher):
    """``hashed``: new secrets hashed; ``verifies``: secrets checked against a hash."""

    def __init__(self) -> None:
        super().__init__(Settings(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1))
        self.hashed = 0
        self.verifies = 0

    async def hash(self, secret: str) -> str:
        self.hashed += 1
        return await super().hash(secret)

    async def verify(self, secret_hash: str, secret: str) -> bool:
        self.verifies += 1
        return await super().verify(secret_hash, secret)
