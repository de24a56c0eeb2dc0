"""The key cache read model: every key's current state by id, built by folding events."""

from __future__ import annotations

from typing import Iterable

from domain.events import AnyEvent
from domain.key import KeyState, evolve

KeyCache = dict[str, KeyState]


def apply(model: KeyCache, event: AnyEvent) -> KeyCache:
    """Apply one event to the cache (in place) and return it."""
    model[event.key_id] = evolve(model.get(event.key_id), event)
    return model


def build(events: Iterable[AnyEvent], model: KeyCache | None = None) -> KeyCache:
    """Fold ``events`` into a (new or given) cache."""
    cache: KeyCache = {} if model is None else model
    for event in events:
        apply(cache, event)
    return cache
