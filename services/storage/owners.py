"""``owners`` and ``owner_events`` (migration 0021): owners' shared limits, each change with its audit row."""

from __future__ import annotations

from typing import Any

import msgspec

from keyledger.domain.credits import Credits
from keyledger.domain.owners import OwnerLimits
from keyledger.domain.recorded import Metadata
from keyledger.services.storage.database import Database

_COLUMNS = ("organization_id, owner_id, rate_limit, credits::text, credits_version, credits_set_at, version, "
            "updated_at, seq")
# One statement: the upsert (absent fields kept, the version bumped, credits_version moved on when credits were
# given) and its owner_events row, so a change is never without its audit record.
_SET = f"""
WITH changed AS (
    INSERT INTO owners AS o (organization_id, owner_id, rate_limit, credits, credits_version, credits_set_at,
                             version)
    VALUES (%(org)s, %(owner)s, %(rate)s, %(credits)s::jsonb, CASE WHEN %(set_credits)s THEN 1 ELSE 0 END,
            CASE WHEN %(set_credits)s AND %(credits)s::jsonb IS NOT NULL THEN now() END, 1)
    ON CONFLICT (organization_id, owner_id) DO UPDATE SET
        rate_limit = CASE WHEN %(set_rate)s THEN excluded.rate_limit ELSE o.rate_limit END,
        credits = CASE WHEN %(set_credits)s THEN excluded.credits ELSE o.credits END,
        credits_version = CASE WHEN %(set_credits)s THEN o.version + 1 ELSE o.credits_version END,
        credits_set_at = CASE WHEN %(set_credits)s THEN excluded.credits_set_at ELSE o.credits_set_at END,
        version = o.version + 1, seq = nextval('owners_seq'), updated_at = now()
    RETURNING {_COLUMNS}
), audited AS (
    INSERT INTO owner_events (organization_id, owner_id, version, type, data, actor, ip, request_id)
    SELECT organization_id, owner_id, version, 'owner.limits_set', %(data)s::jsonb, %(actor)s, %(ip)s, %(rid)s
      FROM changed
)
SELECT * FROM changed
"""
_encoder = msgspec.json.Encoder()
_credits_decoder = msgspec.json.Decoder(Credits)


def _limits(row: tuple[Any, ...]) -> tuple[OwnerLimits, int]:
    org, owner, rate, credits, credits_version, set_at, version, updated_at, seq = row
    return OwnerLimits(organization_id=org, owner_id=owner, rate_limit=rate,
                       credits=_credits_decoder.decode(credits) if credits else None, credits_version=credits_version,
                       credits_set_at=set_at, version=version, updated_at=updated_at), int(seq)


class OwnersTable:
    """Sets, reads and follows owners' limits."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def set(self, organization_id: str, owner_id: str, *, rate_limit: int | None | msgspec.UnsetType,
                  credits: Credits | None | msgspec.UnsetType, metadata: Metadata) -> tuple[OwnerLimits, int]:
        """Set what is given (UNSET: kept; None: removed), recording who did it; the owner and its ``seq``."""
        given: dict[str, Any] = {}
        if not isinstance(rate_limit, msgspec.UnsetType):
            given["rate_limit"] = rate_limit
        if not isinstance(credits, msgspec.UnsetType):
            given["credits"] = credits
        params = {"org": organization_id, "owner": owner_id,
                  "rate": None if isinstance(rate_limit, msgspec.UnsetType) else rate_limit,
                  "credits": _encoder.encode(credits).decode() if isinstance(credits, Credits) else None,
                  "set_rate": "rate_limit" in given, "set_credits": "credits" in given,
                  "data": _encoder.encode(given).decode(), "actor": metadata.actor, "ip": metadata.ip,
                  "rid": metadata.request_id}
        async with self._db._connection() as conn:
            row = await (await conn.execute(_SET, params)).fetchone()
        assert row is not None
        return _limits(row)

    async def get(self, organization_id: str, owner_id: str) -> OwnerLimits | None:
        """One owner's limits (None: never set)."""
        async with self._db._connection() as conn:
            row = await (await conn.execute(f"SELECT {_COLUMNS} FROM owners WHERE organization_id = %s "
                                            "AND owner_id = %s", (organization_id, owner_id))).fetchone()
        return _limits(row)[0] if row else None

    async def changed_since(self, seq: int, limit: int = 1000) -> list[tuple[OwnerLimits, int]]:
        """Owners changed after ``seq``, in ``seq`` order (each with its ``seq``)."""
        async with self._db._connection() as conn:
            rows = await (await conn.execute(f"SELECT {_COLUMNS} FROM owners WHERE seq > %s ORDER BY seq LIMIT %s",
                                             (seq, limit))).fetchall()
        return [_limits(row) for row in rows]
