"""How a key is shown to people and scripts: never the secret or its hash."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from keyledger.domain.access import AccessEntry, validate_access
from keyledger.domain.credits import Credits
from keyledger.domain.key import KeyState
from keyledger.domain.rate import tier_of
from keyledger.domain.recorded import RecordedEvent


def split_access(entries: tuple[AccessEntry, ...]) -> tuple[list[str], list[dict[str, Any]]]:
    """Top-level scopes (the global grants) and the resource-scoped entries, as in the HTTP API."""
    scopes = sorted({scope for entry in entries if entry.resource == "global" for scope in entry.scopes})
    scoped = [
        {"resource": entry.resource, **({"id": entry.id} if entry.id is not None else {}), "scopes": list(entry.scopes)}
        for entry in entries if entry.resource != "global"
    ]
    return scopes, scoped


def join_access(scopes: list[str], entries: list[AccessEntry]) -> tuple[AccessEntry, ...]:
    """Validated access entries from top-level (global) scopes plus resource entries."""
    globals_ = [AccessEntry(resource="global", scopes=tuple(scopes))] if scopes else []
    return validate_access([*globals_, *entries])


def key_view(state: KeyState, now: datetime) -> dict[str, Any]:
    """The public shape of a key (DESIGN.md field names)."""
    scopes, access = split_access(state.access)
    return {
        "id": state.key_id, "prefix": state.prefix, "start": state.start, "name": state.name,
        "description": state.description, "tags": list(state.tags),
        "organization_id": state.organization_id, "scopes": scopes, "access": access,
        "expires_at": state.expires_at, "status": state.status(now), "version": state.version,
        "created_at": state.created_at, "updated_at": state.updated_at, "revoked_at": state.revoked_at,
        "revoke_reason": state.revoke_reason, "previous_secret_valid_until": state.previous_valid_until,
        "rate_limit": state.rate_limit, "rate_tier": tier_of(state),
        "allowed_networks": list(state.allowed_networks),
        "credits": credits_view(state.credits),
        "owner_id": state.owner_id,
    }


def credits_view(credits: Credits | None, remaining: int | None = None,
                 refilled_at: datetime | None = None) -> dict[str, Any] | None:
    """A key's ``credits`` as shown: the setting, ``remaining`` the live balance when the caller read it
    (else what was set)."""
    if credits is None:
        return None
    refill = credits.refill
    return {"remaining": credits.remaining if remaining is None else remaining, "refilled_at": refilled_at,
            "refill": None if refill is None else {"amount": refill.amount, "interval": refill.interval,
                                                   "day_of_month": refill.day_of_month}}


def event_view(recorded: RecordedEvent) -> dict[str, Any]:
    """One history entry: envelope plus what changed, with hashes left out."""
    data = {name: getattr(recorded.event, name) for name in recorded.event.__struct_fields__
            if name not in ("secret_hash", "key_id", "at")}
    if "access" in data and data["access"] is not None:
        data["scopes"], data["access"] = split_access(data["access"])
    return {
        "position": recorded.global_position, "version": recorded.version, "type": recorded.type,
        "at": recorded.event.at, "recorded_at": recorded.recorded_at, "event_id": str(recorded.event_id),
        "metadata": {name: getattr(recorded.metadata, name) for name in recorded.metadata.__struct_fields__
                     if getattr(recorded.metadata, name) is not None},
        "data": data,
    }
