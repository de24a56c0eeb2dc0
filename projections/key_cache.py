"""The key cache read model: every key's current state by id, built by folding events."""

from __future__ import annotations

import enum
from collections.abc import Iterable, MutableMapping

from keyledger.domain.events import AnyEvent
from keyledger.domain.key import KeyState, evolve

KeyCache = dict[str, KeyState]


def apply(model: KeyCache, event: AnyEvent) -> KeyCache:
    """Apply one event to the cache (in place) and return it."""
    model[event.key_id] = evolve(model.get(event.key_id), event)
    return model


class Outcome(enum.Enum):
    """What :func:`apply_at` did with an event."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # version already applied: redelivery or re-publish, ignored
    GAP = "gap"  # an earlier version is missing: read the stream from the store first


def apply_at(model: MutableMapping[str, KeyState], event: AnyEvent, version: int) -> Outcome:
    """Apply ``event`` as version ``version`` of its key, only if it is the next one."""
    current = model.get(event.key_id)
    have = current.version if current is not None else 0
    if version <= have:
        return Outcome.DUPLICATE
    if version > have + 1:
        return Outcome.GAP
    model[event.key_id] = evolve(current, event)
    return Outcome.APPLIED


def apply_all(model: KeyCache, last_positions: dict[str, int], events: Iterable[AnyEvent],
              positions: Iterable[int]) -> KeyCache:
    """Apply ``events`` in order (in place), recording each key's last position from ``positions``
    (one per event): a replay's inner loop."""
    get = model.get
    for position, event in zip(positions, events, strict=True):
        key_id = event.key_id
        model[key_id] = evolve(get(key_id), event)
        last_positions[key_id] = position
    return model
