"""Standard Webhooks signing (checked with the ``standardwebhooks`` library itself), the retry schedule and the
expiry notices a key is due."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from keyledger.domain.errors import ValidationError
from keyledger.domain.notices import KEY_EXPIRED, KEY_EXPIRING, KEY_GRACE_ENDED, NOTICE_TYPES, StoredNotice
from keyledger.domain.webhooks import (
    RetrySchedule,
    body_of,
    days_left,
    event_types,
    expiry_deadlines,
    grace_deadline,
    headers_of,
    secret_text,
    signature,
    to_tell,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SECRET = secret_text(bytes(range(32)))


def notice(**data: object) -> StoredNotice:
    return StoredNotice(position=7, message_id="event:1f0c", type="key.revoked", organization_id="org-a",
                        key_id="k1", data={"key": {"id": "k1", "name": "café ✓"}, **data}, occurred_at=NOW)


def test_a_delivery_verifies_with_the_standard_webhooks_library() -> None:
    sent = notice(actor="key:abc")
    body = body_of(sent)
    headers = headers_of(sent, SECRET, int(time.time()), body)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")
    payload = Webhook(SECRET).verify(body, headers)
    assert payload == {"type": "key.revoked", "timestamp": "2030-01-01T00:00:00Z",
                       "data": {"key": {"id": "k1", "name": "café ✓"}, "actor": "key:abc"}}


def test_a_changed_body_id_or_secret_fails_the_library_check() -> None:
    sent = notice()
    body = body_of(sent)
    headers = headers_of(sent, SECRET, int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"revoked", b"created"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, {**headers, "webhook-id": "event:other"})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_text(bytes(32))).verify(body, headers)


def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body() -> None:
    expected = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(1_700_000_000, UTC), b'{"a":1}')
    assert signature(SECRET, "msg_1", 1_700_000_000, b'{"a":1}') == expected
    assert SECRET.startswith("whsec_") and len(base64.b64decode(SECRET[6:])) == 32


def test_the_body_is_the_same_bytes_every_time() -> None:
    assert body_of(notice()) == body_of(notice())
    assert set(json.loads(body_of(notice()))) == {"type", "timestamp", "data"}


def test_event_types_default_to_all_and_refuse_unknown_ones() -> None:
    assert event_types(None) == NOTICE_TYPES and event_types([]) == NOTICE_TYPES
    assert event_types(["key.revoked", "key.created"]) == ("key.created", "key.revoked")
    with pytest.raises(ValidationError, match="key.deleted"):
        event_types(["key.revoked", "key.deleted"])


def test_retries_start_near_a_second_double_and_stop_at_the_cap() -> None:
    schedule = RetrySchedule(first=1.0, most=3600.0, give_up_after=86400.0)
    assert [schedule.delay(n, 0.5) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert 0.8 <= schedule.delay(1, 0.0) < schedule.delay(1, 0.999) <= 1.2
    assert schedule.delay(40, 0.999) == 3600.0 and schedule.delay(10_000, 0.0) <= 3600.0
    assert not schedule.gives_up(NOW, NOW + timedelta(hours=23, minutes=59))
    assert schedule.gives_up(NOW, NOW + timedelta(hours=24))


def test_a_key_hears_each_threshold_then_that_it_expired() -> None:
    expires = NOW + timedelta(days=40)
    deadlines = expiry_deadlines("k1", expires)
    assert [(d.type, d.days, d.due_at) for d in deadlines] == [
        (KEY_EXPIRING, 30, expires - timedelta(days=30)), (KEY_EXPIRING, 7, expires - timedelta(days=7)),
        (KEY_EXPIRING, 1, expires - timedelta(days=1)), (KEY_EXPIRED, None, expires)]
    assert len({d.message_id for d in deadlines}) == 4
    assert expiry_deadlines("k1", None) == []


def test_a_key_inside_a_threshold_hears_only_the_nearest() -> None:
    deadlines = expiry_deadlines("k1", NOW + timedelta(days=5))
    due = [d for d in deadlines if d.due_at <= NOW]
    assert [(d.type, d.days) for d in to_tell(due)] == [(KEY_EXPIRING, 7)]
    assert days_left(NOW + timedelta(days=5), NOW) == 5
    assert days_left(NOW + timedelta(days=6, hours=13), NOW) == 7
    assert days_left(NOW + timedelta(days=7) - timedelta(seconds=30), NOW) == 7
    assert days_left(NOW + timedelta(days=5, seconds=40), NOW) == 5


def test_an_expired_key_hears_no_warning_then() -> None:
    due = expiry_deadlines("k1", NOW - timedelta(seconds=1))
    assert [d.type for d in to_tell(due)] == [KEY_EXPIRED]


def test_grace_ended_is_told_beside_anything_else() -> None:
    grace = grace_deadline("k1", NOW)
    assert [d.type for d in to_tell([*grace, *expiry_deadlines("k1", NOW)])] == [KEY_EXPIRED, KEY_GRACE_ENDED]
    assert grace_deadline("k1", None) == []
