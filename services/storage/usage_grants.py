"""The ``usage_grants`` table: what each key was allowed to do, by scope, website and data kind, with the last
time (``projections.usage_grants``), added to in the same transaction as the usage rows it counts; and the
hygiene report's reads of it and of the store's rotations, neither of which scans ``usage_events``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec
from psycopg import AsyncConnection

from keyledger.domain.least_privilege import Use
from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_grants import count_grants
from keyledger.services.storage.database import Database

# The grants go as one JSON array of arrays encoded by msgspec (psycopg builds array parameters element by
# element in Python); times in RFC 3339, as msgspec writes them.
_ADD = ("INSERT INTO usage_grants (key_id, scope, website_id, data, last_at, count) "
        "SELECT r->>0, r->>1, r->>2, r->>3, (r->>4)::timestamptz, (r->>5)::bigint "
        "FROM jsonb_array_elements(%s::jsonb) AS r "
        "ON CONFLICT (key_id, scope, website_id, data) DO UPDATE SET "
        "last_at = greatest(usage_grants.last_at, excluded.last_at), count = usage_grants.count + excluded.count")
# Per key: its uses since a time as one text (scope, website id and data kind joined by US, uses by RS, in one
# order; stored values never hold a control character: domain.usage.clean_text) and its last use, the later of
# those uses and key_last_used.
_USED = ("SELECT coalesce(g.key_id, l.key_id), g.uses, greatest(g.last_at, l.last_used_at) FROM ("
         "SELECT key_id, string_agg(scope || chr(31) || website_id || chr(31) || data, chr(30) "
         "ORDER BY scope, website_id, data) AS uses, max(last_at) AS last_at "
         "FROM usage_grants WHERE last_at > %(since)s{keys} GROUP BY key_id) AS g "
         "FULL JOIN (SELECT key_id, last_used_at FROM key_last_used WHERE true{keys}) AS l ON l.key_id = g.key_id")
_USE, _FIELD = "\x1e", "\x1f"
_json = msgspec.json.Encoder().encode
_ROTATED = ("SELECT DISTINCT ON (stream_id) stream_id, (data->>'at')::timestamptz FROM events "
            "WHERE type = 'key.rotated'{} ORDER BY stream_id, version DESC")
_SOME_KEYS = 2_000  # up to this many keys asked: read theirs by key; more: read all and keep theirs


async def add_grants(conn: AsyncConnection, events: Iterable[UsageEvent]) -> None:
    """Count ``events`` into ``usage_grants`` (inside the caller's transaction)."""
    found = count_grants(events)
    if not found:
        return
    rows = sorted(found.items())  # one order for every writer: concurrent sinks cannot deadlock
    await conn.execute(_ADD, (_json([(*grant, at, n) for grant, (at, n) in rows]).decode(),))


class KeyUsage:
    """What the hygiene report reads per key: its allowed requests since a time, and its last rotation."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read(self, key_ids: Sequence[str], since: datetime) -> list[tuple[str, str | None, datetime]]:
        """``(key_id, uses, last_used_at)`` of the keys ever used, among them those of ``key_ids`` (and perhaps
        others): its uses after ``since`` as one text (None: none; :func:`uses_of` decodes it; equal texts are
        equal uses) and when it was last used (by ``key_last_used`` and those uses)."""
        some = len(key_ids) <= _SOME_KEYS
        query = _USED.format(keys=" AND key_id = ANY(%(keys)s)" if some else "")
        async with self._db._connection() as conn:
            cur = await conn.execute(query, {"since": since, "keys": list(key_ids)} if some else {"since": since})
            return await cur.fetchall()

    async def rotations(self, key_ids: Sequence[str] | None) -> dict[str, datetime]:
        """When each of the rotated keys among ``key_ids`` (None: every key) was last rotated (its latest
        ``key.rotated`` event's time)."""
        wanted = None if key_ids is None else set(key_ids)
        some = wanted is not None and len(wanted) <= _SOME_KEYS
        query, params = ((_ROTATED.format(" AND stream_id = ANY(%s)"), (list(wanted or ()),)) if some
                         else (_ROTATED.format(""), ()))
        async with self._db._connection() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        return {key_id: at for key_id, at in rows if wanted is None or key_id in wanted}


def uses_of(text: str) -> tuple[Use, ...]:
    """The uses a text of :meth:`KeyUsage.read` holds."""
    uses = []
    for use in text.split(_USE) if text else ():
        scope, website_id, data = use.split(_FIELD)
        uses.append(Use(scope, website_id or None, data or None))
    return tuple(uses)
