"""The hygiene report (``GET /v1/reports/hygiene``, ``keyledger report hygiene``, the dashboard's Hygiene page):
every active key with its last use, age, last rotation, expiry, ``issues`` and, for an overprivileged key, the
least-privilege ``suggestion`` (``domain.hygiene``, ``domain.least_privilege``), as a ``PATCH /v1/keys/{id}``
body. Built from the keys' states, ``key_last_used``, ``usage_grants`` (the uses of the last ``unused_days``) and
the store's ``key.rotated`` events: never from usage rows. Shown as ``hygiene_views`` says."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import operator
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from keyledger.domain.access import AccessEntry
from keyledger.domain.hygiene import (
    DEFAULT_RULES,
    ISSUES,
    Cutoffs,
    Rules,
    cutoffs,
    issues_of,
    next_change,
)
from keyledger.domain.key import KeyState
from keyledger.domain.least_privilege import narrower
from keyledger.services.config import Settings
from keyledger.services.keys.hygiene_views import (
    Grant,
    HygieneItem,
    HygieneReport,
    HygieneRules,
    HygieneSuggestion,
    Patch,
    grants_of,
)
from keyledger.services.storage.usage_grants import uses_of


class UsageReads(Protocol):
    """What the report reads of the keys' use (``storage.usage_grants.KeyUsage``)."""

    async def read(self, key_ids: Sequence[str], since: datetime) -> list[Used]:
        """``(key_id, uses, last_used_at)`` of keys ever used (all of ``key_ids`` that were, maybe others):
        their uses after ``since`` as one text (equal texts, equal uses; ``storage.usage_grants.uses_of``
        decodes it) and when each was last used."""
        ...

    async def rotations(self, key_ids: Sequence[str] | None) -> dict[str, datetime]:
        """When each rotated key among ``key_ids`` (None: every key) was last rotated."""
        ...


Suggested = tuple[tuple[AccessEntry, ...], str, HygieneSuggestion | None]  # access, uses -> suggestion
Used = tuple[str, str | None, datetime]  # key id, its uses as one text (None: none), its last use
# state, what was read of its use and rotation, and from when until when its issues and age hold -> the item
Reported = tuple[KeyState, Used | None, datetime | None, datetime, datetime, HygieneItem]
_encoder = msgspec.json.Encoder()
_REMEMBER = 100_000  # keys remembered (then forgotten all at once, as domain.access does)
_KEY_ID = operator.attrgetter("key_id")


class HygieneReports:
    """Builds the report from the keys' states and what ``usage`` holds about them.

    Everything it reads is read afresh for every report; what it computes from that is remembered with what
    it was computed from. A key's suggestion is a pure function of its access and its uses: it is computed
    again only when either changed (rarely, for most keys). A key's item is computed again when its state, uses,
    last use or last rotation changed, or time reached the next instant its issues or age change
    (:func:`~keyledger.domain.hygiene.next_change`). The last rotations are remembered with the event store
    position they were read at (``position``, the key cache's): a rotation is an event, so they change only
    when it moves."""

    def __init__(self, usage: UsageReads, rules: Rules = DEFAULT_RULES) -> None:
        self._usage, self.rules = usage, rules
        self._suggestions: dict[str, Suggested] = {}
        self._items: dict[str, Reported] = {}
        self._encoded: dict[str, tuple[HygieneItem, bytes]] = {}  # each item's JSON, while it is the item
        self._rotations: tuple[int, dict[str, datetime]] = (-1, {})

    async def report(self, states: Sequence[KeyState], now: datetime, organization_id: str | None = None,
                     position: int | None = None) -> HygieneReport:
        """The report on the active keys among ``states`` at ``now`` (``organization_id``: whose they are,
        for the record; ``position``: the event store position ``states`` are current to, if known)."""
        active = [state for state in states  # state.status(now) == "active", without a call per key
                  if state.revoked_at is None and (state.expires_at is None or now < state.expires_at)]
        active.sort(key=_KEY_ID)
        ids = [state.key_id for state in active]
        used, rotated = await asyncio.gather(self._usage.read(ids, now - timedelta(days=self.rules.unused_days)),
                                             self._rotated(ids, position))
        if len(self._items) > _REMEMBER:
            self._suggestions.clear()
            self._items.clear()
            self._encoded.clear()
        with _gc_paused():  # thousands of acyclic objects: no collection rescans the process for them
            by_key = {row[0]: row for row in used}
            at, items, remembered = cutoffs(now, self.rules), [], self._items
            for state in active:
                key_id = state.key_id
                row, last_rotated_at = by_key.get(key_id), rotated.get(key_id)
                known = remembered.get(key_id)
                # a key's version names its state: a state decoded afresh from the compact cache is the same one
                if known is not None and known[0].version == state.version and known[1] == row \
                        and known[2] == last_rotated_at \
                        and known[3] <= now < known[4]:
                    items.append(known[5])  # nothing it depends on changed
                else:
                    items.append(self._item(state, now, at, row, last_rotated_at))
        summary = dict.fromkeys(ISSUES, 0)
        for item in items:
            for issue in item.issues:
                summary[issue] += 1
        rules = HygieneRules(unused_days=self.rules.unused_days, rotate_days=self.rules.rotate_days,
                             expiring_days=self.rules.expiring_days)
        return HygieneReport(generated_at=now, organization_id=organization_id, rules=rules,
                             summary={"keys": len(items), **summary}, items=items)

    def encode(self, report: HygieneReport) -> bytes:
        """``report`` as JSON (what encoding it with msgspec gives), each item's JSON remembered while the item
        is the one remembered for its key."""
        items: list[bytes] = []
        for item in report.items:
            known = self._encoded.get(item.id)
            if known is None or known[0] is not item:
                known = (item, _encoder.encode(item))
                self._encoded[item.id] = known
            items.append(known[1])
        head = _encoder.encode(msgspec.structs.replace(report, items=[]))  # ... "items":[]}: items come last
        return b"".join((head[:-2], b",".join(items), b"]}"))

    async def _rotated(self, ids: list[str], position: int | None) -> dict[str, datetime]:
        if position is None:
            return await self._usage.rotations(ids)
        read_at, known = self._rotations
        if read_at != position:
            known = await self._usage.rotations(None)  # every key's: reused for any organization's report
            self._rotations = (position, known)
        return known

    def _item(self, state: KeyState, now: datetime, at: Cutoffs, row: Used | None,
              last_rotated_at: datetime | None) -> HygieneItem:
        uses, last_used_at = (row[1] or "", row[2]) if row is not None else ("", None)
        issued = last_rotated_at or state.created_at
        suggestion = self._suggestion(state, uses) if uses else None
        issues = issues_of(state, at, last_used_at=last_used_at, secret_issued_at=issued,
                           overprivileged=suggestion is not None)
        item = HygieneItem(
            id=state.key_id, name=state.name, start=state.start, organization_id=state.organization_id,
            version=state.version, created_at=state.created_at, age_days=(now - state.created_at).days,
            last_used_at=last_used_at, last_rotated_at=last_rotated_at, expires_at=state.expires_at, issues=issues,
            suggestion=suggestion)
        until = next_change(state, now, last_used_at=last_used_at, secret_issued_at=issued, rules=self.rules)
        self._items[state.key_id] = (state, row, last_rotated_at, now, until, item)
        return item

    def _suggestion(self, state: KeyState, uses: str) -> HygieneSuggestion | None:
        remembered = self._suggestions.get(state.key_id)
        if remembered is not None and remembered[0] == state.access and remembered[1] == uses:
            return remembered[2]
        found = narrower(state.access, uses_of(uses))
        suggestion = None
        if found is not None:
            scopes, access = grants_of(found.access)
            suggestion = HygieneSuggestion(patch=Patch(scopes=scopes, access=access), unused_grants=[
                Grant(resource=entry.resource, id=entry.id, scopes=sorted(entry.scopes)) for entry in found.unused])
        self._suggestions[state.key_id] = (state.access, uses, suggestion)
        return suggestion


def hygiene_rules(settings: Settings) -> Rules:
    """The report's thresholds from the settings (``KEYLEDGER_HYGIENE_UNUSED_DAYS``, ``_ROTATE_DAYS``)."""
    return Rules(unused_days=settings.hygiene_unused_days, rotate_days=settings.hygiene_rotate_days)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while the report's objects are built (as replay does: services.cache.replay)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
