"""The hygiene report (``GET /v1/reports/hygiene``, ``keyledger report hygiene``, the dashboard's Hygiene page):
every active key with its last use, age, last rotation, expiry, ``issues`` and, for an overprivileged key, the
least-privilege ``suggestion`` (``domain.hygiene``), as a ``PATCH /v1/keys/{id}`` body. Read from the keys'
states, ``key_last_used`` and ``usage_grants`` (the uses of the last ``unused_days``): never from usage rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import msgspec

from keyledger.domain.access import AccessEntry
from keyledger.domain.hygiene import DEFAULT_RULES, ISSUES, Rules, Use, assess
from keyledger.domain.key import KeyState
from keyledger.services.config import Settings


class Grant(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An access entry as the API shows it: ``scopes`` on ``resource`` (``id``: the website)."""

    resource: str
    scopes: list[str]
    id: str | None = None


class Patch(msgspec.Struct, kw_only=True):
    """A ``PATCH /v1/keys/{id}`` body that replaces the key's grants: global ``scopes`` and ``access``."""

    scopes: list[str]
    access: list[Grant]


class HygieneSuggestion(msgspec.Struct, kw_only=True):
    """The narrowest access the key's uses needed, as a ``patch`` to send as it is (with ``If-Match``), and
    the held grants it would remove (``unused_grants``)."""

    patch: Patch
    unused_grants: list[Grant]


class HygieneItem(msgspec.Struct, kw_only=True):
    """One active key: who it is, how it is kept, what needs attention."""

    id: str
    name: str
    start: str
    organization_id: str | None
    version: int  # send it as If-Match with the suggestion's patch
    created_at: datetime
    age_days: int
    last_used_at: datetime | None
    last_rotated_at: datetime | None  # null: never rotated (its secret dates from created_at)
    expires_at: datetime | None
    scopes: list[str]
    access: list[Grant]
    issues: list[str]
    suggestion: HygieneSuggestion | None


class HygieneRules(msgspec.Struct, kw_only=True):
    """The thresholds the report applied, in days."""

    unused_days: int
    rotate_days: int
    expiring_days: int


class HygieneReport(msgspec.Struct, kw_only=True):
    """Every active key the caller may see (ordered by id), with how many keys have each issue."""

    generated_at: datetime
    organization_id: str | None
    rules: HygieneRules
    summary: dict[str, int]
    items: list[HygieneItem]


class UsageReads(Protocol):
    """What the report reads of the keys' use (``storage.usage_grants.KeyUsage``)."""

    async def read(self, key_ids: Sequence[str], since: datetime) -> tuple[dict[str, list[Use]],
                                                                          dict[str, datetime],
                                                                          dict[str, datetime]]:
        """For ``key_ids``: their uses after ``since``, the last of those per key, their last rotations."""
        ...


LastUses = Callable[[list[str]], Awaitable[dict[str, datetime]]]  # key ids -> when each was last used (if ever)


class HygieneReports:
    """Builds the report from the keys' states and what ``usage`` and ``last_used`` hold about them."""

    def __init__(self, usage: UsageReads, last_used: LastUses, rules: Rules = DEFAULT_RULES) -> None:
        self._usage, self._last_used, self.rules = usage, last_used, rules

    async def report(self, states: Sequence[KeyState], now: datetime,
                     organization_id: str | None = None) -> HygieneReport:
        """The report on the active keys among ``states`` at ``now`` (``organization_id``: whose they are,
        for the record)."""
        active = sorted((state for state in states if state.status(now) == "active"), key=lambda s: s.key_id)
        ids = [state.key_id for state in active]
        since = now - timedelta(days=self.rules.unused_days)
        used, last_seen, rotated = await self._usage.read(ids, since)
        last_used = await self._last_used(ids) if ids else {}
        items = [self._item(state, now, used.get(state.key_id, ()), _later(last_used.get(state.key_id),
                                                                           last_seen.get(state.key_id)),
                            rotated.get(state.key_id)) for state in active]
        summary = dict.fromkeys(ISSUES, 0)
        for item in items:
            for issue in item.issues:
                summary[issue] += 1
        rules = HygieneRules(unused_days=self.rules.unused_days, rotate_days=self.rules.rotate_days,
                             expiring_days=self.rules.expiring_days)
        return HygieneReport(generated_at=now, organization_id=organization_id, rules=rules,
                             summary={"keys": len(items), **summary}, items=items)

    def _item(self, state: KeyState, now: datetime, uses: Iterable[Use], last_used_at: datetime | None,
              last_rotated_at: datetime | None) -> HygieneItem:
        assessment = assess(state, now, last_used_at=last_used_at, secret_issued_at=last_rotated_at or state.created_at,
                            uses=uses, rules=self.rules)
        scopes, access = grants_of(state.access)
        suggestion = None
        if assessment.suggestion is not None:
            suggested_scopes, suggested = grants_of(assessment.suggestion.access)
            suggestion = HygieneSuggestion(patch=Patch(scopes=suggested_scopes, access=suggested),
                                           unused_grants=[Grant(resource=entry.resource, id=entry.id,
                                                                scopes=sorted(entry.scopes))
                                                          for entry in assessment.suggestion.unused])
        return HygieneItem(
            id=state.key_id, name=state.name, start=state.start, organization_id=state.organization_id,
            version=state.version, created_at=state.created_at, age_days=(now - state.created_at).days,
            last_used_at=last_used_at, last_rotated_at=last_rotated_at, expires_at=state.expires_at, scopes=scopes,
            access=access, issues=list(assessment.issues), suggestion=suggestion)


def hygiene_rules(settings: Settings) -> Rules:
    """The report's thresholds from the settings (``KEYLEDGER_HYGIENE_UNUSED_DAYS``, ``_ROTATE_DAYS``)."""
    return Rules(unused_days=settings.hygiene_unused_days, rotate_days=settings.hygiene_rotate_days)


def grants_of(entries: Iterable[AccessEntry]) -> tuple[list[str], list[Grant]]:
    """Global scopes (sorted) and the resource-scoped entries, as the HTTP API shows a key's access."""
    scopes: set[str] = set()
    access: list[Grant] = []
    for entry in entries:
        if entry.resource == "global":
            scopes.update(entry.scopes)
        else:
            access.append(_grant(entry))
    return sorted(scopes), access


def _grant(entry: AccessEntry) -> Grant:
    return Grant(resource=entry.resource, id=entry.id, scopes=list(entry.scopes))


def _later(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None or second is None:
        return first or second
    return max(first, second)
