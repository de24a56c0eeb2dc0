"""The feeder: follows the event store from its checkpoint and appends a notice for every key lifecycle event
(key.created, key.access_changed, key.rotated, key.revoked, key.leak_reported), keeping each key's expiry
deadlines beside, all with the checkpoint in one transaction: a crash repeats a batch, which is stored once
(the notice's message id is the event's id)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from keyledger.domain.events import KeyCreated, KeyLeakReported, KeyRevoked, KeyRotated
from keyledger.domain.key import KeyState, evolve, fold
from keyledger.domain.notices import (
    KEY_ACCESS_CHANGED,
    KEY_CREATED,
    KEY_GRACE_ENDED,
    KEY_LEAK_REPORTED,
    KEY_REVOKED,
    KEY_ROTATED,
    Notice,
)
from keyledger.domain.recorded import RecordedEvent
from keyledger.domain.webhooks import expiry_deadlines, grace_deadline
from keyledger.services.storage.event_store import EventStore
from keyledger.services.storage.webhook_feed import DeadlineChange, WebhookFeed

KeyView = Callable[[KeyState, datetime], dict[str, Any]]  # how the API shows a key (never a secret or a hash)
LIFECYCLE = (KEY_CREATED, KEY_ACCESS_CHANGED, KEY_ROTATED, KEY_REVOKED, KEY_LEAK_REPORTED)
# key.imported and key.rehashed send no notice of their own: an import's key.created (and key.revoked) does,
# and a re-hash changes nothing a receiver sees; their states still fold (``evolve``) like every event's
# key.credits_set sends none either: credits are counted outside the event log, and a receiver learns of a
# setting through the key's next key.access_changed view (its state folds here, so that view shows them)
_ALL_DEADLINES = ("key.expiring", "key.expired", KEY_GRACE_ENDED)


def lifecycle_notice(recorded: RecordedEvent, state: KeyState, view: KeyView) -> Notice:
    """The notice of one stored key event: the key as it was right after it, who did it, and where the event
    stands in the store."""
    meta = recorded.metadata
    data = {"key": view(state, recorded.event.at), "actor": meta.actor, "position": recorded.global_position,
            "event_id": str(recorded.event_id), **({"request_id": meta.request_id} if meta.request_id else {})}
    if isinstance(recorded.event, KeyLeakReported):  # where the secret was seen (the event never holds it)
        leak = recorded.event
        data["leak"] = {"source": leak.source, "url": leak.url, "reporter": leak.reporter,
                        "reported_at": leak.reported_at, "ended_grace": leak.ended_grace}
    return Notice(message_id=f"event:{recorded.event_id}", type=recorded.type, organization_id=state.organization_id,
                  key_id=state.key_id, data=data, occurred_at=recorded.event.at)


def deadline_changes(recorded: RecordedEvent, state: KeyState) -> list[DeadlineChange]:
    """How one event changes the key's pending expiry notices."""
    match recorded.event:
        case KeyCreated():
            return [DeadlineChange(deadline=d) for d in expiry_deadlines(state.key_id, state.expires_at)]
        case KeyRotated():  # the old secret the previous rotation kept working is gone now
            return [DeadlineChange(key_id=state.key_id, types=(KEY_GRACE_ENDED,)),
                    *(DeadlineChange(deadline=d) for d in grace_deadline(state.key_id, state.previous_valid_until))]
        case KeyRevoked():
            return [DeadlineChange(key_id=state.key_id, types=_ALL_DEADLINES)]
        case KeyLeakReported(ended_grace=True):  # the old secret stopped working now, not at the end of its grace
            return [DeadlineChange(key_id=state.key_id, types=(KEY_GRACE_ENDED,))]
    return []


class LifecycleFeeder:
    """Appends the notices of the store's key events, page by page, from its checkpoint."""

    def __init__(self, feed: WebhookFeed, store: EventStore, view: KeyView, page_size: int = 200,
                 remembered: int = 10_000) -> None:
        self._feed, self._store, self._view, self._page = feed, store, view, page_size
        self._states: OrderedDict[str, KeyState] = OrderedDict()  # the latest keys seen, to fold the next event
        self._remembered = remembered
        self.fed = 0
        self.soonest: datetime | None = None  # the earliest deadline the last call added

    async def feed_pending(self) -> int:
        """Feed every event after the checkpoint; how many."""
        position, total, self.soonest = await self._feed.checkpoint(), 0, None
        while page := await self._store.read_page(position, self._page):
            notices, changes = [], []
            for recorded in page:
                state = await self._state_after(recorded)
                if recorded.type in LIFECYCLE:
                    notices.append(lifecycle_notice(recorded, state, self._view))
                changes += deadline_changes(recorded, state)
            if not await self._feed.commit(position, page[-1].global_position, notices, changes):
                position = await self._feed.checkpoint()  # another feeder went first: go on from where it got
                continue
            added = [c.deadline.due_at for c in changes if c.deadline is not None]
            self.soonest = min([*added, *([self.soonest] if self.soonest else [])], default=None)
            position, total = page[-1].global_position, total + len(page)
        self.fed += total
        return total

    async def _state_after(self, recorded: RecordedEvent) -> KeyState:
        """The key's state right after ``recorded`` (from the last one seen, else folded from its stream)."""
        known = self._states.get(recorded.stream_id)
        if known is not None and known.version == recorded.version - 1:
            state = evolve(known, recorded.event)
        else:
            events = await self._store.read_stream(recorded.stream_id)
            folded = fold(r.event for r in events if r.version <= recorded.version)
            assert folded is not None, recorded.stream_id
            state = folded
        self._states[recorded.stream_id] = state
        self._states.move_to_end(recorded.stream_id)
        while len(self._states) > self._remembered:
            self._states.popitem(last=False)
        return state
