"""Builders of domain events for tests (no secrets: hashes here are placeholders)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keyledger.domain.access import AccessEntry
from keyledger.domain.events import KeyAccessChanged, KeyCreated

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def created(key_id: str, at: datetime = T0, name: str = "test key") -> KeyCreated:
    """A key.created event with one website grant."""
    return KeyCreated(key_id=key_id, at=at, name=name,
                      access=(AccessEntry(resource="website", id="site-a", scopes=("read:data",)),),
                      secret_hash="$argon2id$placeholder", prefix="kl", start=f"kl_{key_id}")


def changes(key_id: str, count: int, start: datetime = T0) -> list[KeyAccessChanged]:
    """``count`` access-changed events renaming the key step by step."""
    return [KeyAccessChanged(key_id=key_id, at=start + timedelta(seconds=i + 1), name=f"name {i}")
            for i in range(count)]
