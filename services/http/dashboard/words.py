"""What the dashboard says in words: the document's scope groups and descriptions, access entries,
statuses and lifecycle events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from keyledger.domain.access import AccessEntry
from keyledger.domain.credits import Credits
from keyledger.domain.key import KeyState
from keyledger.domain.recorded import RecordedEvent

# The API Keys document's groups, in its order, with its one-line description of each scope.
SCOPE_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Data access", (
        ("read:data", "Basic read access to analytics data"),
        ("write:data", "Write or modify analytics data (server-side ingestion)"),
        ("read:analytics", "Advanced analytics access with custom queries and exports"),
        ("read:export", "Access to data export functionality"),
        ("write:custom-sql", "Execute custom SQL queries against analytics database"),
    )),
    ("Feature-specific", (
        ("read:experiments", "Read A/B tests and feature flags"),
        ("track:events", "Send tracking events and custom events"),
        ("write:otel", "Authorize OpenTelemetry tracking and metrics"),
    )),
    ("Administrative", (
        ("admin:apikeys", "Create, update, rotate, revoke API keys"),
        ("admin:users", "User management operations"),
        ("admin:organizations", "Organization management operations"),
        ("admin:websites", "Website management operations"),
    )),
    ("Rate limiting", (
        ("rate:standard", "Standard rate limits (default)"),
        ("rate:premium", "Higher rate limits for premium usage"),
        ("rate:enterprise", "Enterprise-level rate limits"),
    )),
)
SCOPE_NAMES: tuple[str, ...] = tuple(scope for _, scopes in SCOPE_GROUPS for scope, _ in scopes)
RESOURCE_TYPES: tuple[tuple[str, str], ...] = (
    ("website", "a specific website (give its id)"),
    ("analytics_data", "Analytics events and metrics data"),
    ("error_data", "JavaScript errors and exceptions"),
    ("web_vitals", "Core Web Vitals performance metrics"),
    ("custom_events", "Custom event tracking data"),
    ("export_data", "Data export operations"),
)
OUTCOMES = ("VALID", "FORBIDDEN", "NOT_FOUND", "RATE_LIMITED", "REVOKED", "EXPIRED", "MALFORMED", "AUTH_REQUIRED",
            "UNAVAILABLE", "MISSING")
EXPIRES_SOON = timedelta(days=7)
STATUS_WORDS = {"active": "Active", "revoked": "Revoked", "expired": "Expired"}


def resource_words(entry: AccessEntry) -> str:
    """``website site-a``, ``every resource (global)`` or the data kind."""
    if entry.resource == "global":
        return "every resource (global)"
    if entry.resource == "website":
        return f"website {entry.id}"
    return entry.resource


def access_words(entries: tuple[AccessEntry, ...]) -> list[str]:
    """One line per granted scope and resource: ``read:data on website site-a``."""
    return [f"{scope} on {resource_words(entry)}" for entry in entries for scope in entry.scopes]


def scopes_summary(state: KeyState, limit: int = 3) -> str:
    """The scopes a key holds anywhere, the first ``limit`` by name and how many more."""
    scopes = sorted({scope for entry in state.access for scope in entry.scopes})
    shown = ", ".join(scopes[:limit])
    return f"{shown} +{len(scopes) - limit} more" if len(scopes) > limit else (shown or "none")


def status_of(state: KeyState, now: datetime) -> tuple[str, bool]:
    """The key's status (``active``/``revoked``/``expired``) and whether an active key expires within 7 days."""
    status = state.status(now)
    soon = status == "active" and state.expires_at is not None and state.expires_at - now <= EXPIRES_SOON
    return status, soon


def event_words(recorded: RecordedEvent) -> str:
    """What a lifecycle event did, for the history table (never a hash)."""
    event: Any = recorded.event
    match recorded.type:
        case "key.created":
            networks = f", limited to {', '.join(event.allowed_networks)}" if event.allowed_networks else ""
            return f"Created as “{event.name}” with {'; '.join(access_words(event.access)) or 'no access'}{networks}"
        case "key.access_changed":
            parts = []
            if event.name is not None:
                parts.append(f"renamed to “{event.name}”")
            if event.access is not None:
                parts.append(f"access set to {'; '.join(access_words(event.access)) or 'nothing'}")
            if event.rate_limit is not None:
                parts.append(f"rate limit {event.rate_limit or 'back to its tier'}")
            if event.description is not None:
                parts.append("description changed")
            if event.tags is not None:
                parts.append(f"tags set to {', '.join(event.tags) or 'none'}")
            if event.allowed_networks is not None:
                parts.append(f"allowed networks set to {', '.join(event.allowed_networks)}" if event.allowed_networks
                             else "allowed networks lifted (usable from anywhere)")
            return "Changed: " + ", ".join(parts)
        case "key.rotated":
            until = event.previous_valid_until
            grace = f"the old secret works until {until:%Y-%m-%d %H:%M:%S} UTC" if until else "the old one stopped"
            return f"Rotated: a new secret (start {event.start}); {grace}"
        case "key.revoked":
            return "Revoked" + (f": {event.reason}" if event.reason else "")
        case "key.imported":
            return f"Imported from {event.source} (its key id there: {event.source_id})"
        case "key.rehashed":
            return "Secret re-hashed with argon2id on its first verify (the source's SHA-256 no longer opens it)"
        case "key.leak_reported":
            where = f" at {event.url}" if event.url else ""
            grace = "; the old secret's grace period ended" if event.ended_grace else ""
            return f"Leak reported by {event.source}{where}{grace}"
        case "key.credits_set":
            return credits_words(event.credits)
    return recorded.type


def credits_words(credits: Credits | None) -> str:
    """A key.credits_set as the history shows it: how many, and the refill."""
    if credits is None:
        return "Credits removed: unlimited use"
    refill = credits.refill
    if refill is None:
        return f"Credits set to {credits.remaining}"
    when = "daily" if refill.interval == "daily" else f"monthly on day {refill.day_of_month or 1}"
    return f"Credits set to {credits.remaining}, refilled to {refill.amount} {when} (UTC)"
