"""Webhooks as pure values: Standard Webhooks signing and payloads, the retry schedule, and the expiry
notices a key is due (the address policy an endpoint must pass is :mod:`keyledger.domain.webhook_urls`).

Signing follows the Standard Webhooks specification: the secret is ``whsec_`` + the base64 of random bytes,
the signature ``v1,<base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>">``, and the body
``{"type", "timestamp", "data"}``. Nothing here reads a clock or draws a random number: the caller passes
the time, the secret's bytes and the jitter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from datetime import datetime, timedelta

import msgspec

from keyledger.domain.errors import ValidationError
from keyledger.domain.notices import KEY_EXPIRED, KEY_EXPIRING, KEY_GRACE_ENDED, NOTICE_TYPES, StoredNotice

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the standard asks for 24 to 64
EXPIRY_DAYS = (30, 7, 1)  # a key.expiring notice when a key comes within each of these many days of expiry
STATUSES = ("active", "failing", "disabled")
_encoder = msgspec.json.Encoder()


def secret_text(raw: bytes) -> str:
    """The secret as shown once to whoever registers the endpoint: ``whsec_`` + base64."""
    return SECRET_PREFIX + base64.b64encode(raw).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,`` + base64 HMAC-SHA256 of ``<id>.<timestamp>.<body>``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def body_of(notice: StoredNotice) -> bytes:
    """The request body of ``notice``: ``{"type", "timestamp", "data"}`` (the same bytes at every attempt)."""
    return _encoder.encode({"type": notice.type, "timestamp": notice.occurred_at, "data": notice.data})


def headers_of(notice: StoredNotice, secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt to deliver ``notice`` signed with ``secret`` at ``timestamp`` (Unix s)."""
    return {"webhook-id": notice.message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, notice.message_id, timestamp, body),
            "content-type": "application/json"}


def event_types(requested: list[str] | None) -> tuple[str, ...]:
    """The notice types an endpoint receives: ``requested`` (none: every type), each a known one."""
    if requested is None or not requested:
        return NOTICE_TYPES
    unknown = sorted({name for name in requested if name not in NOTICE_TYPES})
    if unknown:
        raise ValidationError(f"unknown event type(s) {', '.join(map(repr, unknown))}; known: "
                              f"{', '.join(NOTICE_TYPES)}")
    return tuple(name for name in NOTICE_TYPES if name in requested)


class RetrySchedule(msgspec.Struct, frozen=True, kw_only=True):
    """When to try a failed delivery again: ``first`` seconds after the first failure, doubling, at most
    ``most`` apart, each pause scattered by up to a fifth either way; give up ``give_up_after`` seconds
    after the first failure (the endpoint is then marked failing)."""

    first: float = 1.0
    most: float = 3600.0
    give_up_after: float = 86400.0

    def delay(self, failures: int, jitter: float) -> float:
        """Seconds until the next attempt after ``failures`` (1, 2, ...) failed ones; ``jitter`` in [0, 1)."""
        base = self.first * 2.0 ** min(max(failures - 1, 0), 62)
        return min(self.most, min(base, self.most) * (0.8 + 0.4 * jitter))

    def gives_up(self, retrying_since: datetime, now: datetime) -> bool:
        """Whether a delivery failing since ``retrying_since`` has been retried long enough at ``now``."""
        return now - retrying_since >= timedelta(seconds=self.give_up_after)


class Deadline(msgspec.Struct, frozen=True, kw_only=True):
    """A moment when a key is due a notice: ``kind`` is the notice type, ``days`` the expiry threshold
    (key.expiring only); ``message_id`` names it, so it is told once."""

    message_id: str
    key_id: str
    type: str
    due_at: datetime
    days: int | None = None


def expiry_deadlines(key_id: str, expires_at: datetime | None) -> list[Deadline]:
    """The expiry notices of a key expiring at ``expires_at``: one per threshold, then key.expired."""
    if expires_at is None:
        return []
    stamp = expires_at.isoformat()
    return [*(Deadline(message_id=f"expiring:{key_id}:{days}:{stamp}", key_id=key_id, type=KEY_EXPIRING,
                       due_at=expires_at - timedelta(days=days), days=days) for days in EXPIRY_DAYS),
            Deadline(message_id=f"expired:{key_id}:{stamp}", key_id=key_id, type=KEY_EXPIRED, due_at=expires_at)]


def grace_deadline(key_id: str, previous_valid_until: datetime | None) -> list[Deadline]:
    """The key.grace_ended notice of a rotation whose old secret works until ``previous_valid_until``."""
    if previous_valid_until is None:
        return []
    return [Deadline(message_id=f"grace_ended:{key_id}:{previous_valid_until.isoformat()}", key_id=key_id,
                     type=KEY_GRACE_ENDED, due_at=previous_valid_until)]


def to_tell(due: list[Deadline]) -> list[Deadline]:
    """Of one key's deadlines that are due, those to tell: key.expired when it is due (no warning then),
    else the nearest threshold only (a key created 5 days before expiry hears "7 days", not "30" too);
    key.grace_ended in any case."""
    expired = [d for d in due if d.type == KEY_EXPIRED]
    expiring = sorted((d for d in due if d.type == KEY_EXPIRING), key=lambda d: d.days or 0)
    told = expired or expiring[:1]
    return [*told, *(d for d in due if d.type == KEY_GRACE_ENDED)]


def days_left(expires_at: datetime, now: datetime) -> int:
    """Days until ``expires_at`` at ``now``, to the nearest whole day (the 7-day warning, told a few seconds
    after the moment, says 7; a key created 5 days and a minute before expiry hears 5)."""
    return max(0, math.floor((expires_at - now).total_seconds() / 86400 + 0.5))
