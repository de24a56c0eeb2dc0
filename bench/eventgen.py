"""Realistic key events, generated in Python and bulk-loaded into ``events`` with COPY.

The JSON is produced by ``domain.events.encode_event`` on real event Structs, so the rows are
exactly what the application stores. Secret hashes are fake placeholders, never real secrets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
from psycopg import AsyncConnection

from keyledger.domain.access import AccessEntry
from keyledger.domain.events import Event, KeyAccessChanged, KeyCreated, KeyRevoked, KeyRotated, encode_event
from keyledger.domain.recorded import Metadata
from keyledger.domain.token import ALPHABET, new_key_id

EPOCH = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
SPAN = 180 * 86_400.0  # the generated traffic covers about six months
CREATED, ACCESS_CHANGED, ROTATED, REVOKED = range(4)
_SCOPES = ("read:data", "write:data", "read:analytics", "track:events", "read:export", "write:otel",
           "read:experiments", "rate:premium")
_KINDS = ("analytics_data", "error_data", "web_vitals", "custom_events", "export_data")
_AGENTS = ("keyledger-cli/0.1", "Mozilla/5.0 (X11; Linux x86_64) dashboard", "terraform-provider-keyledger/1.2")
_meta_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Workload:
    """The generated traffic: key ids and, in global-position order, (time, key index, version, kind)."""

    key_ids: list[str]
    order: list[tuple[float, int, int, int]]
    revoked: int


def plan(keys: int, events_per_key: int = 10, revoked_share: float = 0.1, seed: int = 7) -> Workload:
    """Interleave ``keys`` streams of ``events_per_key`` events as real traffic would, by event time.

    Each key starts with key.created, then mostly key.access_changed with some key.rotated;
    ``revoked_share`` of the keys end with key.revoked.
    """
    rng = random.Random(seed)
    key_ids = [new_key_id(rng.randbytes) for _ in range(keys)]
    order: list[tuple[float, int, int, int]] = []
    gap = SPAN * 0.4 / max(events_per_key - 1, 1)
    revoked = 0
    for index in range(keys):
        t = EPOCH + rng.random() * SPAN * 0.6
        order.append((t, index, 1, CREATED))
        ends_revoked = rng.random() < revoked_share
        revoked += ends_revoked
        for version in range(2, events_per_key + 1):
            t += rng.expovariate(1 / gap)
            kind = REVOKED if ends_revoked and version == events_per_key else (
                ROTATED if rng.random() < 0.3 else ACCESS_CHANGED)
            order.append((t, index, version, kind))
    order.sort()
    return Workload(key_ids, order, revoked)


def _access_pool(rng: random.Random, size: int = 256) -> list[tuple[AccessEntry, ...]]:
    """Realistic access lists: a few website and data-kind grants, sometimes a global one."""
    pool = []
    for _ in range(size):
        entries = [AccessEntry(resource="website", id=f"site-{rng.randrange(10_000)}",
                               scopes=tuple(rng.sample(_SCOPES, rng.randint(1, 3))))
                   for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            entries.append(AccessEntry(resource=rng.choice(_KINDS), scopes=("read:analytics",)))
        if rng.random() < 0.2:
            entries.append(AccessEntry(resource="global", scopes=("read:data",)))
        pool.append(tuple(entries))
    return pool


class EventFactory:
    """Builds the event Struct for one planned (time, key, version, kind) entry."""

    def __init__(self, key_ids: list[str], seed: int = 11) -> None:
        self._rng = random.Random(seed)
        self._key_ids = key_ids
        self._access = _access_pool(self._rng)

    def _fake_hash(self) -> str:
        """An argon2id-shaped placeholder: NOT a hash of anything, never a secret."""
        return f"$argon2id$v=19$m=65536,t=3,p=1$placeholder$bench{self._rng.getrandbits(160):040x}"

    def _start(self, key_id: str) -> str:
        return f"kl_{key_id}{''.join(self._rng.choices(ALPHABET, k=4))}"

    def build(self, at: datetime, index: int, kind: int) -> Event:
        """The event of ``kind`` for key number ``index`` at ``at``."""
        key_id, rng = self._key_ids[index], self._rng
        if kind == CREATED:
            return KeyCreated(key_id=key_id, at=at, name=f"key {index} ({rng.choice(('ingest', 'export', 'ci'))})",
                              organization_id=f"org-{index % 997}", access=rng.choice(self._access),
                              expires_at=at + timedelta(days=365) if rng.random() < 0.2 else None,
                              secret_hash=self._fake_hash(), prefix="kl", start=self._start(key_id),
                              rate_limit=600 if rng.random() < 0.1 else None)
        if kind == ACCESS_CHANGED:
            renamed = rng.random() < 0.2
            return KeyAccessChanged(key_id=key_id, at=at, access=None if renamed else rng.choice(self._access),
                                    name=f"key {index} renamed" if renamed else None,
                                    rate_limit=rng.choice((1200, 0)) if rng.random() < 0.05 else None)
        if kind == ROTATED:
            grace = at + timedelta(hours=1) if rng.random() < 0.5 else None
            return KeyRotated(key_id=key_id, at=at, secret_hash=self._fake_hash(), start=self._start(key_id),
                              previous_valid_until=grace)
        return KeyRevoked(key_id=key_id, at=at, reason="rotated out")


def _copy_text(value: bytes) -> bytes:
    """Escape a value for COPY's text format (JSON never holds raw tabs or newlines)."""
    return value.replace(b"\\", b"\\\\") if b"\\" in value else value


def copy_lines(workload: Workload, chunk: int = 20_000, seed: int = 13) -> Iterator[bytes]:
    """Yield COPY text-format chunks of ``events`` rows, positions 1..N in workload order."""
    rng, factory = random.Random(seed), EventFactory(workload.key_ids)
    types = {kind: str(cls.__struct_config__.tag).encode() for kind, cls in
             ((CREATED, KeyCreated), (ACCESS_CHANGED, KeyAccessChanged), (ROTATED, KeyRotated), (REVOKED, KeyRevoked))}
    key_bytes = [key_id.encode() for key_id in workload.key_ids]
    lines: list[bytes] = []
    for position, (t, index, version, kind) in enumerate(workload.order, start=1):
        at = datetime.fromtimestamp(t, UTC)
        event_id = f"{rng.getrandbits(128):032x}"
        meta = Metadata(actor=f"admin-{index % 50}", ip=f"10.{index % 256}.{version}.{index % 199}",
                        user_agent=_AGENTS[index % 3], request_id=event_id)
        lines.append(b"%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n" % (
            position, event_id.encode(), key_bytes[index], version, types[kind],
            _copy_text(encode_event(factory.build(at, index, kind))), _copy_text(_meta_encoder.encode(meta)),
            at.isoformat().encode()))
        if len(lines) == chunk:
            yield b"".join(lines)
            lines.clear()
    if lines:
        yield b"".join(lines)


async def load(conn: AsyncConnection, workload: Workload) -> int:
    """COPY the workload into ``events``, set ``event_position`` to N, VACUUM ANALYZE; returns N."""
    columns = "global_position, event_id, stream_id, version, type, data, metadata, recorded_at"
    async with conn.cursor().copy(f"COPY events ({columns}) FROM STDIN") as copy:
        for block in copy_lines(workload):
            await copy.write(block)
    total = len(workload.order)
    await conn.execute("UPDATE event_position SET value = %s", (total,))
    await conn.execute("VACUUM (ANALYZE) events")
    return total
