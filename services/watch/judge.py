"""From usage events to findings, the same for the live watch and for a rebuild: which key each event concerns,
the rules applied to that key's profile (:func:`~keyledger.domain.finding_rules.observe`), and each match
added to its finding (:func:`~keyledger.domain.findings.recorded`); and the ``key.finding`` notice of a new
finding or of one whose severity changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from keyledger.domain.finding_rules import Profile, guessed_key_id, observe
from keyledger.domain.findings import Finding, Match, Thresholds, finding_id, recorded
from keyledger.domain.key import KeyState
from keyledger.domain.notices import KEY_FINDING, Notice
from keyledger.domain.usage import UsageEvent

KeyView = Callable[[KeyState, datetime], dict[str, Any]]
"""How a key is shown to receivers (``services.keys.views.key_view``, injected by the composition root)."""


class Matched(NamedTuple):
    """One match of one key's event, with the organization its finding belongs to."""

    key_id: str
    organization_id: str | None
    match: Match


class Change(NamedTuple):
    """A finding as it was before this batch (None: new) and as it is now."""

    before: Finding | None
    after: Finding

    @property
    def noticed(self) -> bool:
        """Whether receivers hear of it: a new finding, or a change of severity."""
        return self.before is None or self.before.severity != self.after.severity


def concerned_key(event: UsageEvent) -> str | None:
    """The key a usage event tells about: the key it used, or the key whose id a wrong secret named."""
    return event.key_id or guessed_key_id(event)


def guessed_keys(events: Iterable[UsageEvent]) -> set[str]:
    """The key ids that wrong secrets among ``events`` named (whether those keys exist is the caller's to ask)."""
    return {key_id for event in events if event.key_id is None and (key_id := guessed_key_id(event))}


def match_events(events: Iterable[UsageEvent], profiles: MutableMapping[str, Profile], existing: Mapping[str, KeyState],
                 limits: Thresholds) -> list[Matched]:
    """Apply every event (in the order given) to its key's profile (made when missing); the matches. A wrong
    secret counts only for a key in ``existing`` (which also gives its organization)."""
    matched: list[Matched] = []
    for event in events:
        key_id = event.key_id
        if key_id is not None:
            organization = event.organization_id
        else:
            guessed = guessed_key_id(event)
            state = existing.get(guessed) if guessed else None
            if state is None:
                continue
            key_id, organization = state.key_id, state.organization_id
        profile = profiles.get(key_id)
        if profile is None:
            profile = profiles[key_id] = Profile()
        matched += [Matched(key_id, organization, match) for match in observe(profile, event, limits)]
    return matched


def finding_ids(matched: Iterable[Matched]) -> set[str]:
    """The ids of the findings the matches raise or grow."""
    return {finding_id(m.match.kind, m.key_id, m.match.subject) for m in matched}


def fold_matches(matched: Iterable[Matched], findings: MutableMapping[str, Finding],
                 limits: Thresholds) -> dict[str, Change]:
    """Add each match to its finding in ``findings`` (which must hold those that exist); the findings changed."""
    changes: dict[str, Change] = {}
    for key_id, organization, match in matched:
        found = finding_id(match.kind, key_id, match.subject)
        before = findings.get(found)
        after = findings[found] = recorded(before, match, key_id, organization, limits)
        changes[found] = Change(changes[found].before if found in changes else before, after)
    return changes


def finding_notice(finding: Finding, state: KeyState | None, key_view: KeyView) -> Notice:
    """The ``key.finding`` notice of ``finding`` at its severity: the finding as the API shows it (with its
    evidence) and the key's view when the key is known."""
    return Notice(message_id=f"finding:{finding.id}:{finding.severity}", type=KEY_FINDING,
                  organization_id=finding.organization_id, key_id=finding.key_id,
                  data={"finding": msgspec.to_builtins(finding),
                        "key": key_view(state, finding.last_seen) if state is not None else None},
                  occurred_at=finding.last_seen)
