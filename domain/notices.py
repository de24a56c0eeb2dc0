"""Notices: what keyledger tells the outside world about a key (webhook messages), as pure values.

A notice has a ``message_id`` that its producer derives from what it reports (the event's id, the key and
threshold of an expiry warning, the finding and its count), so producing it twice stores it once; the
``type`` is one of :data:`NOTICE_TYPES`; ``data`` is the JSON object a receiver gets (never a secret or a
hash); ``occurred_at`` is when it happened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

KEY_CREATED, KEY_ACCESS_CHANGED, KEY_ROTATED, KEY_REVOKED = "key.created", "key.access_changed", "key.rotated", \
    "key.revoked"
KEY_EXPIRING, KEY_EXPIRED, KEY_GRACE_ENDED = "key.expiring", "key.expired", "key.grace_ended"
KEY_FINDING = "key.finding"
KEY_LEAK_REPORTED = "key.leak_reported"
NOTICE_TYPES: tuple[str, ...] = (KEY_CREATED, KEY_ACCESS_CHANGED, KEY_ROTATED, KEY_REVOKED, KEY_EXPIRING,
                                 KEY_EXPIRED, KEY_GRACE_ENDED, KEY_FINDING, KEY_LEAK_REPORTED)


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One message for webhook endpoints, before it has a position."""

    message_id: str
    type: str
    organization_id: str | None
    key_id: str | None
    data: dict[str, Any]
    occurred_at: datetime


class StoredNotice(Notice, frozen=True, kw_only=True):
    """A notice with its ``position`` in the one order every endpoint delivers in."""

    position: int
