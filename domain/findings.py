"""Suspicious-activity findings as pure values: their kinds and severities, the thresholds of the rules that
raise them (:mod:`keyledger.domain.finding_rules`), and how a rule's match becomes a finding or grows one.

A finding is one per kind, key and ``subject`` (the network of ``new_network``, the key's status of
``revoked_key_used``, empty for the other kinds): a rule matching again adds to its ``count`` and moves its
``last_seen``, never a second finding. Its id is derived from those three, so the live watch and a rebuild
from the usage table give the same finding the same id. Once its count reaches
``Thresholds.escalate_after`` it goes one severity up (low → medium → high).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import msgspec

REVOKED_KEY_USED, NEW_NETWORK, MANY_NETWORKS = "revoked_key_used", "new_network", "many_networks"
SECRET_GUESSING, SCOPE_PROBING, VOLUME_SPIKE = "secret_guessing", "scope_probing", "volume_spike"
LEAKED_KEY = "leaked_key"  # a live secret reported leaked while KEYLEDGER_LEAK_POLICY=notify keeps the key
SEVERITY: dict[str, str] = {REVOKED_KEY_USED: "high", NEW_NETWORK: "medium", MANY_NETWORKS: "high",
                            SECRET_GUESSING: "medium", SCOPE_PROBING: "medium", VOLUME_SPIKE: "low",
                            LEAKED_KEY: "high"}
REPORTED_KINDS = (LEAKED_KEY,)  # raised by the leak intake, not from usage events: a rebuild keeps them
KINDS: tuple[str, ...] = tuple(SEVERITY)  # every kind, as the API and the settings spell them
SEVERITIES = ("low", "medium", "high")
OPEN, ACKNOWLEDGED = "open", "acknowledged"
STATUSES = (OPEN, ACKNOWLEDGED)


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    """When each rule matches (``KEYLEDGER_FINDINGS_<FIELD>`` in the settings), and the profile's bound."""

    new_network_uses: int = 20  # uses a key must have behind it before a new network is a finding
    new_network_days: int = 30  # a network not seen for this long is new again
    many_networks: int = 20  # distinct /24 (IPv6: /48) networks ...
    many_networks_minutes: int = 10  # ... within this many minutes
    secret_guessing: int = 10  # wrong secrets for one key id ...
    secret_guessing_minutes: int = 5  # ... within this many minutes
    scope_probing: int = 10  # FORBIDDEN answers for one key ...
    scope_probing_targets: int = 3  # ... across this many distinct scopes, or distinct resources ...
    scope_probing_minutes: int = 5  # ... within this many minutes
    volume_spike_factor: int = 10  # uses in one hour at least this many times the hourly median ...
    volume_spike_days: int = 7  # ... of the hours of this many days before it ...
    volume_spike_history_hours: int = 24  # ... once the key has been in use for this many hours
    escalate_after: int = 100  # a finding whose count reaches this goes one severity up
    networks_kept: int = 256  # networks a key's profile remembers (the least recently seen is forgotten)


class Match(msgspec.Struct, frozen=True, kw_only=True):
    """One rule matching one usage event: the finding it raises or grows, and what showed it."""

    kind: str
    subject: str
    at: datetime  # the event's time
    evidence: dict[str, Any]


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One finding, as stored and as the API shows it."""

    id: str
    kind: str
    severity: str
    key_id: str
    organization_id: str | None
    subject: str
    first_seen: datetime
    last_seen: datetime
    count: int
    evidence: dict[str, Any]  # what the latest match showed
    status: str = OPEN
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


def finding_id(kind: str, key_id: str, subject: str) -> str:
    """The id of the one finding of ``kind`` for ``key_id`` and ``subject`` (a UUID, the same every time)."""
    digest = hashlib.sha256(f"{kind}\x00{key_id}\x00{subject}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16]))


def severity_of(kind: str, count: int, limits: Thresholds) -> str:
    """The kind's severity, one step higher once ``count`` reached ``limits.escalate_after``."""
    base = SEVERITIES.index(SEVERITY[kind])
    return SEVERITIES[min(base + (count >= limits.escalate_after), len(SEVERITIES) - 1)]


def recorded(existing: Finding | None, match: Match, key_id: str, organization_id: str | None,
             limits: Thresholds) -> Finding:
    """The finding after ``match``: a new one (count 1), or ``existing`` with its count one higher, its
    ``last_seen`` the later of the two times and the evidence of this match (its status stays)."""
    if existing is None:
        return Finding(id=finding_id(match.kind, key_id, match.subject), kind=match.kind,
                       severity=severity_of(match.kind, 1, limits), key_id=key_id, organization_id=organization_id,
                       subject=match.subject, first_seen=match.at, last_seen=match.at, count=1,
                       evidence=match.evidence)
    count = existing.count + 1
    return msgspec.structs.replace(
        existing, count=count, severity=severity_of(existing.kind, count, limits),
        first_seen=min(existing.first_seen, match.at), last_seen=max(existing.last_seen, match.at),
        evidence=match.evidence, organization_id=existing.organization_id or organization_id)


def acknowledged(finding: Finding, at: datetime, by: str) -> Finding:
    """``finding`` acknowledged by ``by`` at ``at`` (already acknowledged: unchanged)."""
    if finding.status == ACKNOWLEDGED:
        return finding
    return msgspec.structs.replace(finding, status=ACKNOWLEDGED, acknowledged_at=at, acknowledged_by=by)
