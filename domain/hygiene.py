"""Key hygiene, pure: which of a key's habits need attention (``issues``, :data:`ISSUES`), from its state, its
last use, when its secret was issued and, for ``overprivileged``, the requests it was allowed lately
(``domain.least_privilege``: the narrowest access that allows them)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec

from keyledger.domain.key import KeyState
from keyledger.domain.least_privilege import Suggestion, Use, narrower

UNUSED, NOT_ROTATED, EXPIRING, NO_EXPIRY, OVERPRIVILEGED = (
    "unused", "not_rotated", "expiring", "no_expiry", "overprivileged")
ISSUES: tuple[str, ...] = (UNUSED, NOT_ROTATED, EXPIRING, NO_EXPIRY, OVERPRIVILEGED)


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """The thresholds, in days: no use for ``unused_days`` (also the window of uses a suggestion is drawn
    from), a secret ``rotate_days`` old, an expiry within ``expiring_days``."""

    unused_days: int = 30
    rotate_days: int = 90
    expiring_days: int = 30


DEFAULT_RULES = Rules()


class Assessment(msgspec.Struct, frozen=True, kw_only=True):
    """A key's ``issues`` (in :data:`ISSUES` order) and, when it is ``overprivileged``, the ``suggestion``."""

    issues: tuple[str, ...]
    suggestion: Suggestion | None = None


class Cutoffs(msgspec.Struct, frozen=True, kw_only=True):
    """The instants :func:`issues_of` compares a key's times with, for ``rules`` at one moment."""

    unused_before: datetime  # last used (or, never used, created) at or before: unused
    rotated_before: datetime  # secret issued at or before: not rotated
    expiring_until: datetime  # expires at or before: expiring


def cutoffs(now: datetime, rules: Rules = DEFAULT_RULES) -> Cutoffs:
    """The :class:`Cutoffs` of ``rules`` at ``now``."""
    return Cutoffs(unused_before=now - timedelta(days=rules.unused_days),
                   rotated_before=now - timedelta(days=rules.rotate_days),
                   expiring_until=now + timedelta(days=rules.expiring_days))


def assess(state: KeyState, now: datetime, *, last_used_at: datetime | None, secret_issued_at: datetime,
           uses: Iterable[Use], rules: Rules = DEFAULT_RULES) -> Assessment:
    """The issues of ``state`` at ``now`` (:func:`issues_of`), with the suggestion of :func:`narrower` for the
    ``uses`` (those within ``unused_days``)."""
    suggestion = narrower(state.access, uses)
    return Assessment(issues=issues_of(state, cutoffs(now, rules), last_used_at=last_used_at,
                                       secret_issued_at=secret_issued_at, overprivileged=suggestion is not None),
                      suggestion=suggestion)


def issues_of(state: KeyState, at: Cutoffs, *, last_used_at: datetime | None, secret_issued_at: datetime,
              overprivileged: bool) -> tuple[str, ...]:
    """The issues of ``state`` in :data:`ISSUES` order. A key is ``unused`` when its last use (else its
    creation) is at least ``unused_days`` ago; ``not_rotated`` when its secret was issued at least
    ``rotate_days`` ago; ``expiring`` when it expires within ``expiring_days``; ``no_expiry`` when it never
    expires; ``overprivileged`` as told (:func:`narrower` found a narrower access)."""
    issues: list[str] = []
    if (last_used_at or state.created_at) <= at.unused_before:
        issues.append(UNUSED)
    if secret_issued_at <= at.rotated_before:
        issues.append(NOT_ROTATED)
    expires_at = state.expires_at
    if expires_at is None:
        issues.append(NO_EXPIRY)
    elif expires_at <= at.expiring_until:
        issues.append(EXPIRING)
    if overprivileged:
        issues.append(OVERPRIVILEGED)
    return tuple(issues)


def next_change(state: KeyState, now: datetime, *, last_used_at: datetime | None, secret_issued_at: datetime,
                rules: Rules = DEFAULT_RULES) -> datetime:
    """The first instant after ``now`` at which the issues of ``state`` (its last use and secret as they are) or
    its age in whole days change: until then, :func:`issues_of` answers as it does at ``now``."""
    created = state.created_at
    moments = [created + timedelta(days=(now - created).days + 1),
               (last_used_at or created) + timedelta(days=rules.unused_days),
               secret_issued_at + timedelta(days=rules.rotate_days)]
    if state.expires_at is not None:
        moments += [state.expires_at - timedelta(days=rules.expiring_days), state.expires_at]
    return min(moment for moment in moments if moment > now)
