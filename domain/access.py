"""Scopes, resource types, access entries and the pure access decision."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from keyledger.domain.errors import ValidationError

SCOPES: frozenset[str] = frozenset(
    {
        "read:data", "write:data", "read:experiments", "track:events", "admin:apikeys",
        "read:analytics", "write:custom-sql", "read:export", "write:otel", "admin:users",
        "admin:organizations", "admin:websites", "rate:standard", "rate:premium",
        "rate:enterprise",
    }
)
DATA_KINDS: frozenset[str] = frozenset(
    {"analytics_data", "error_data", "web_vitals", "custom_events", "export_data"}
)
RESOURCES: frozenset[str] = frozenset({"global", "website"}) | DATA_KINDS
MAX_ACCESS_ENTRIES = 100
MAX_RESOURCE_ID_LENGTH = 200


class AccessEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One grant: ``scopes`` on ``resource`` (``id`` names the website for ``website``)."""

    resource: str
    scopes: tuple[str, ...]
    id: str | None = None

    def label(self) -> str:
        """A short readable form such as ``website:abc`` or ``global``."""
        return f"{self.resource}:{self.id}" if self.id is not None else self.resource


class AccessDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of :func:`check_access`: allowed or not, which entry granted it, and why."""

    allowed: bool
    reason: str
    granted_by: AccessEntry | None = None


def validate_access(entries: Iterable[AccessEntry]) -> tuple[AccessEntry, ...]:
    """Check every entry (known resource and scopes, website id rules, the 100-entry cap).

    Returns the entries as a tuple with duplicate scopes removed; raises ValidationError.
    """
    result = tuple(entries)
    if len(result) > MAX_ACCESS_ENTRIES:
        raise ValidationError(f"too many access entries: {len(result)} (at most {MAX_ACCESS_ENTRIES})")
    return tuple(_validate_entry(entry) for entry in result)


def _validate_entry(entry: AccessEntry) -> AccessEntry:
    if entry.resource not in RESOURCES:
        expected = ", ".join(sorted(RESOURCES))
        raise ValidationError(f"unknown resource type {entry.resource!r}; expected one of {expected}")
    if entry.resource == "website":
        if not entry.id or not entry.id.strip():
            raise ValidationError("a website access entry needs the website id")
        if len(entry.id) > MAX_RESOURCE_ID_LENGTH:
            raise ValidationError(f"website id longer than {MAX_RESOURCE_ID_LENGTH} characters")
        if not entry.id.isprintable():  # NUL and other control characters: refused, not stored
            raise ValidationError("website id must not contain control characters")
    elif entry.id is not None:
        raise ValidationError(f"resource {entry.resource!r} takes no id")
    if not entry.scopes:
        raise ValidationError(f"access entry {entry.label()!r} grants no scopes")
    unknown = sorted(set(entry.scopes) - SCOPES)
    if unknown:
        raise ValidationError(f"unknown scope {unknown[0]!r}")
    return AccessEntry(resource=entry.resource, id=entry.id, scopes=tuple(dict.fromkeys(entry.scopes)))


def granted_scopes(entries: Iterable[AccessEntry]) -> tuple[str, ...]:
    """All scopes any entry grants, sorted (for display and rate-limit tiers). Remembered per tuple of
    entries (a key state's ``access``, asked on every verify of the key): the tuple is held with its answer,
    so its ``id`` is not reused while remembered."""
    remembered = _SCOPES_OF.get(id(entries))
    if remembered is not None and remembered[0] is entries:
        return remembered[1]
    scopes = tuple(sorted({scope for entry in entries for scope in entry.scopes}))
    if isinstance(entries, tuple):
        if len(_SCOPES_OF) >= _REMEMBERED_SCOPES:
            _SCOPES_OF.clear()
        _SCOPES_OF[id(entries)] = (entries, scopes)
    return scopes


_REMEMBERED_SCOPES = 65_536
_SCOPES_OF: dict[int, tuple[object, tuple[str, ...]]] = {}


def check_access(
    entries: Iterable[AccessEntry], scope: str, website_id: str | None = None, data: str | None = None
) -> AccessDecision:
    """Decide whether ``entries`` allow ``scope`` on the named website and/or data kind.

    ``global`` covers everything; ``website`` covers requests naming that website id; a
    data kind covers requests naming that data kind. The reason names the granting entry
    or explains why none did. Decisions on a tuple of entries (a key state's ``access``, asked on every
    verify of the key) are remembered with the tuple, as :func:`granted_scopes` does, for website ids
    no longer than an id may be (the memory it takes stays bounded whatever callers send).
    """
    if not isinstance(entries, tuple) or (website_id is not None and len(website_id) > MAX_RESOURCE_ID_LENGTH):
        return _decide_access(entries, scope, website_id, data)
    asked = (id(entries), scope, website_id, data)
    remembered = _DECISIONS.get(asked)
    if remembered is not None and remembered[0] is entries:
        return remembered[1]
    decision = _decide_access(entries, scope, website_id, data)
    if len(_DECISIONS) >= _REMEMBERED_DECISIONS:
        _DECISIONS.clear()
    _DECISIONS[asked] = (entries, decision)
    return decision


_REMEMBERED_DECISIONS = 16_384
_DECISIONS: dict[tuple[int, str, str | None, str | None], tuple[object, AccessDecision]] = {}


def _decide_access(entries: Iterable[AccessEntry], scope: str, website_id: str | None,
                   data: str | None) -> AccessDecision:
    holders = [entry for entry in entries if scope in entry.scopes]
    if not holders:
        return AccessDecision(allowed=False, reason=f"scope {scope} is not granted by any access entry")
    for entry in holders:
        if _covers(entry, website_id, data):
            return AccessDecision(allowed=True, reason=f"granted by {entry.label()}", granted_by=entry)
    return AccessDecision(allowed=False, reason=_refusal(scope, holders, website_id, data))


def _covers(entry: AccessEntry, website_id: str | None, data: str | None) -> bool:
    if entry.resource == "global":
        return True
    if entry.resource == "website":
        return website_id is not None and website_id == entry.id
    return data is not None and data == entry.resource


def _refusal(scope: str, holders: list[AccessEntry], website_id: str | None, data: str | None) -> str:
    websites = [entry.id for entry in holders if entry.resource == "website"]
    kinds = [entry.resource for entry in holders if entry.resource in DATA_KINDS]
    parts = []
    if websites:
        wanted = f"website {website_id}" if website_id is not None else "no website (website_id is required)"
        granted = ", ".join(str(w) for w in websites)
        parts.append(f"{scope} is granted only for website {granted}, request names {wanted}")
    if kinds:
        wanted = data if data is not None else "no data kind"
        parts.append(f"{scope} is granted only for {', '.join(kinds)}, request names {wanted}")
    return "; ".join(parts)
