"""How the hygiene report is shown (``GET /v1/reports/hygiene``'s body, the CLI's ``--json``, the Hygiene page):
never a secret or its hash; a suggestion's ``patch`` in the shape of a ``PATCH /v1/keys/{id}`` body."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from keyledger.domain.access import AccessEntry


class Grant(msgspec.Struct, kw_only=True, gc=False, omit_defaults=True):
    """An access entry as the API shows it: ``scopes`` on ``resource`` (``id``: the website)."""

    resource: str
    scopes: list[str]
    id: str | None = None


class Patch(msgspec.Struct, kw_only=True, gc=False):
    """A ``PATCH /v1/keys/{id}`` body that replaces the key's grants: global ``scopes`` and ``access``."""

    scopes: list[str]
    access: list[Grant]


class HygieneSuggestion(msgspec.Struct, kw_only=True, gc=False):
    """The narrowest access the key's uses needed, as a ``patch`` to send as it is (with ``If-Match``), and
    the held grants it would remove (``unused_grants``)."""

    patch: Patch
    unused_grants: list[Grant]


class HygieneItem(msgspec.Struct, kw_only=True, gc=False):
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
    issues: tuple[str, ...]
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
