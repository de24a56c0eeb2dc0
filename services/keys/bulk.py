"""Bulk actions on keys (``POST /v1/keys/bulk``): which keys a call names (its ids, or a filter over the keys
the caller may see), and the one command each key gets. Every key's outcome is reported; the commands run
through :meth:`KeyService.each`, one event per key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Literal

import msgspec

from keyledger.domain.commands import ChangeAccess, Command, RevokeKey, clean_tags, clean_text
from keyledger.domain.errors import DomainError, ValidationError
from keyledger.domain.key import KeyState

Action = Literal["revoke", "add_tags", "remove_tags"]
MAX_BULK_KEYS = 10_000  # keys one call may name or select


class BulkFilter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Keys to act on: all of the given conditions hold. ``tag``: the key carries it; ``created_before``: made
    before that time. A filter never selects a revoked key, nor the calling key itself."""

    organization_id: str | None = None
    tag: str | None = None
    owner_id: str | None = None
    created_before: datetime | None = None

    def is_empty(self) -> bool:
        """Whether no condition is given."""
        return (self.organization_id is None and self.tag is None and self.owner_id is None
                and self.created_before is None)


class BulkOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One key's result: ``code`` is ``OK``, ``UNCHANGED`` (nothing to do, no event) or the error code that
    refused it (``NOT_FOUND``, ``CONFLICT``, ``VALIDATION_ERROR``...), with ``error`` saying why."""

    id: str
    ok: bool
    code: str
    error: str | None = None


def selected(states: Iterable[KeyState], wanted: BulkFilter, caller: str) -> list[KeyState]:
    """The keys ``wanted`` selects among ``states`` (already limited to what the caller may see), ordered by
    id: not revoked, not the calling key ``caller``, and matching every condition given."""
    tag = wanted.tag.strip().lower() if wanted.tag is not None else None
    found = []
    for state in states:
        if state.revoked_at is not None or state.key_id == caller:
            continue
        if wanted.organization_id is not None and state.organization_id != wanted.organization_id:
            continue
        if tag is not None and tag not in state.tags:
            continue
        if wanted.owner_id is not None and state.owner_id != wanted.owner_id:
            continue
        if wanted.created_before is not None and not state.created_at < wanted.created_before:
            continue
        found.append(state)
    found.sort(key=lambda s: s.key_id)
    return found


def command_maker(action: Action, tags: Sequence[str], reason: str) -> Callable[[KeyState], Command | None]:
    """What each key gets for ``action`` (validated here, before any key is touched: ValidationError):
    ``revoke`` with ``reason``; ``add_tags``/``remove_tags`` its tags with ``tags`` added or taken away
    (None when that changes nothing)."""
    if action == "revoke":
        if tags:
            raise ValidationError("tags are for add_tags and remove_tags, not revoke")
        why = clean_text("reason", reason) or ""
        return lambda state: RevokeKey(key_id=state.key_id, reason=why)
    if reason:
        raise ValidationError("reason is for revoke only")
    given = clean_tags(tuple(tags))
    if not given:
        raise ValidationError(f"{action} needs tags")
    if action == "add_tags":
        def add(state: KeyState) -> Command | None:
            after = tuple(dict.fromkeys((*state.tags, *given)))
            return None if after == state.tags else ChangeAccess(key_id=state.key_id, tags=after)
        return add
    gone = set(given)

    def remove(state: KeyState) -> Command | None:
        after = tuple(tag for tag in state.tags if tag not in gone)
        return None if after == state.tags else ChangeAccess(key_id=state.key_id, tags=after)
    return remove


def outcome_of(key_id: str, result: KeyState | None | DomainError) -> BulkOutcome:
    """How one key's result is reported."""
    if isinstance(result, DomainError):
        return BulkOutcome(id=key_id, ok=False, code=result.code, error=str(result))
    return BulkOutcome(id=key_id, ok=True, code="OK" if result is not None else "UNCHANGED")
