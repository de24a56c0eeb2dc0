"""The dashboard's forms read into command arguments, with a message per field for what is wrong.

Only shape is checked here (numbers, times, which row is which); the values themselves are validated
where the API validates them, in the domain, and its refusals are shown beside the field they name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import msgspec

from keyledger.domain.access import AccessEntry
from keyledger.domain.key import KeyState
from keyledger.services.clock import as_utc
from keyledger.services.http.dashboard.words import SCOPE_NAMES

ACCESS_ROWS = 3  # blank resource-access rows a form offers (and the most it reads beyond a key's own)
MAX_ROWS = 100


class Form(Protocol):
    """What a parsed form offers (Litestar's ``FormMultiDict``)."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def getall(self, key: str, default: Any = None) -> list[Any]: ...


class AccessRow(msgspec.Struct, kw_only=True):
    """One resource-access row as typed."""

    resource: str = ""
    id: str = ""
    scopes: list[str] = []


class KeyForm(msgspec.Struct, kw_only=True):
    """The create/edit form's values as typed (re-shown on errors) and the errors per field."""

    name: str = ""
    description: str = ""
    tags: str = ""
    allowed_networks: str = ""
    organization_id: str = ""
    scopes: list[str] = []
    rows: list[AccessRow] = []
    expires_at: str = ""
    rate_limit: str = ""
    version: str = ""
    errors: dict[str, str] = {}

    def access(self) -> tuple[AccessEntry, ...]:
        """Global scopes and the filled-in rows as access entries (not yet validated)."""
        entries = [AccessEntry(resource="global", scopes=tuple(self.scopes))] if self.scopes else []
        for row in self.rows:
            if row.resource:
                entries.append(AccessEntry(resource=row.resource, id=row.id.strip() or None, scopes=tuple(row.scopes)))
        return tuple(entries)

    def tag_list(self) -> list[str]:
        """The tags, split on commas and spaces."""
        return [tag for tag in self.tags.replace(",", " ").split() if tag]

    def network_list(self) -> list[str]:
        """The allowed networks, split on commas, spaces and line breaks."""
        return [entry for entry in self.allowed_networks.replace(",", " ").split() if entry]

    def expiry(self) -> datetime | None:
        """The expiry as a UTC time (None when blank); an error on the field when it is not a time."""
        return parse_time(self.expires_at, "expires_at", self.errors)

    def limit(self) -> int | None:
        """The per-key rate limit (None when blank); an error on the field when it is not a number."""
        if not self.rate_limit.strip():
            return None
        try:
            return int(self.rate_limit.strip())
        except ValueError:
            self.errors["rate_limit"] = "Give a whole number of requests per minute, or leave it blank"
            return None

    def expected_version(self) -> int | None:
        """The version the form was filled in against."""
        return int(self.version) if self.version.isdigit() else None


def _text(form: Form, name: str, cap: int = 5000) -> str:
    value = form.get(name)
    return value[:cap] if isinstance(value, str) else ""


def read_key_form(form: Form) -> KeyForm:
    """The create/edit form's fields; rows without a resource type are left out."""
    rows = []
    for i in range(1, MAX_ROWS + 1):
        if form.get(f"access_{i}_resource") is None:
            break
        resource = _text(form, f"access_{i}_resource", 100)
        rows.append(AccessRow(resource=resource, id=_text(form, f"access_{i}_id", 300),
                              scopes=[s for s in form.getall(f"access_{i}_scopes", []) if isinstance(s, str)]))
    parsed = KeyForm(name=_text(form, "name"), description=_text(form, "description"), tags=_text(form, "tags"),
                     allowed_networks=_text(form, "allowed_networks"),
                     organization_id=_text(form, "organization_id"),
                     scopes=[s for s in form.getall("scope", []) if isinstance(s, str)], rows=rows,
                     expires_at=_text(form, "expires_at", 100), rate_limit=_text(form, "rate_limit", 100),
                     version=_text(form, "version", 20), errors={})
    for i, row in enumerate(parsed.rows, 1):
        if row.resource and not row.scopes:
            parsed.errors["access"] = f"Row {i}: choose the scopes it grants on {row.resource}"
        if not row.resource and (row.id.strip() or row.scopes):
            parsed.errors["access"] = f"Row {i}: choose a resource type"
    return parsed


def form_of_key(state: KeyState) -> KeyForm:
    """The edit form filled in with the key's current values."""
    scopes = [s for entry in state.access if entry.resource == "global" for s in entry.scopes]
    rows = [AccessRow(resource=e.resource, id=e.id or "", scopes=list(e.scopes))
            for e in state.access if e.resource != "global"]
    return KeyForm(name=state.name, description=state.description, tags=", ".join(state.tags),
                   allowed_networks=", ".join(state.allowed_networks),
                   organization_id=state.organization_id or "", scopes=sorted(scopes, key=_scope_order),
                   rows=rows, rate_limit=str(state.rate_limit or ""), version=str(state.version), errors={})


def _scope_order(scope: str) -> int:
    return SCOPE_NAMES.index(scope) if scope in SCOPE_NAMES else len(SCOPE_NAMES)


def with_blank_rows(form: KeyForm) -> KeyForm:
    """The form with blank access rows up to ``ACCESS_ROWS`` (at least one)."""
    blank = max(ACCESS_ROWS - len(form.rows), 1)
    return msgspec.structs.replace(form, rows=[*form.rows, *(AccessRow() for _ in range(blank))])


def parse_time(value: str, field: str, errors: dict[str, str]) -> datetime | None:
    """A ``datetime-local`` value (or an ISO time) as UTC; blank is None; else an error on ``field``."""
    text = value.strip()
    if not text:
        return None
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:  # not a time, or (e.g. 0001-01-01T00:00+14:00) one before year 1 or after 9999 in UTC
        errors[field] = "Give a date and time, e.g. 2031-01-31T12:00 (UTC)"
        return None


FIELD_WORDS: tuple[tuple[str, str], ...] = (
    ("allowed_networks", "allowed_networks"),
    ("description", "description"), ("tag", "tags"), ("name", "name"), ("organization", "organization_id"),
    ("expires_at", "expires_at"), ("rate_limit", "rate_limit"), ("website", "access"), ("access", "access"),
    ("resource", "access"), ("scope", "scopes"),
)


def field_of(message: str) -> str:
    """The form field a domain refusal speaks of (``general`` when none)."""
    lowered = message.lower()
    return next((field for word, field in FIELD_WORDS if lowered.startswith(word) or f" {word}" in lowered),
                "general")
