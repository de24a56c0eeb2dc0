"""Events as stored: the envelope (position, id, stream, version, time) and who caused them."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from keyledger.domain.events import AnyEvent


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who caused an event and from where; stored beside it, never inside the domain event."""

    actor: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: the envelope columns plus the decoded domain event."""

    global_position: int
    event_id: uuid.UUID
    stream_id: str
    version: int
    type: str
    event: AnyEvent
    metadata: Metadata
    recorded_at: datetime
