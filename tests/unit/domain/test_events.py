"""Events keep stable tags and survive a JSON round trip."""

from datetime import UTC, datetime

import msgspec
import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.credits import Credits, Refill
from keyledger.domain.events import (
    EVENT_CLASSES,
    KeyAccessChanged,
    KeyCreated,
    KeyCreditsSet,
    KeyImported,
    KeyLeakReported,
    KeyRehashed,
    KeyRevoked,
    KeyRotated,
    decode_event,
    encode_event,
    event_type,
)

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SAMPLES = [
    KeyCreated(key_id="k", at=AT, name="n", access=(AccessEntry(resource="website", id="w", scopes=("read:data",)),),
               secret_hash="$argon2id$x", prefix="kl", start="kl_k"),
    KeyAccessChanged(key_id="k", at=AT, access=(), name="m"),
    KeyRotated(key_id="k", at=AT, secret_hash="$argon2id$y", start="kl_k2", previous_valid_until=AT),
    KeyRevoked(key_id="k", at=AT, reason="leaked"),
    KeyLeakReported(key_id="k", at=AT, source="github", url="https://github.com/o/r", reported_at=AT),
    KeyCreditsSet(key_id="k", at=AT, credits=Credits(remaining=5, refill=Refill(amount=9, interval="monthly",
                                                                                day_of_month=31))),
    KeyImported(key_id="k", at=AT, source="unkey", source_id="key_1"),
    KeyRehashed(key_id="k", at=AT, secret_hash="$argon2id$z"),
]


def test_tags_are_stable() -> None:
    assert [cls.__struct_config__.tag for cls in EVENT_CLASSES] == [event_type(e) for e in SAMPLES] == [
        "key.created", "key.access_changed", "key.rotated", "key.revoked", "key.leak_reported", "key.credits_set",
        "key.imported", "key.rehashed"]


@pytest.mark.parametrize("event", SAMPLES)
def test_round_trip(event: object) -> None:
    data = encode_event(event)  # type: ignore[arg-type,unused-ignore]
    assert decode_event(data) == event
    assert msgspec.json.decode(data)["type"] == event_type(event)  # type: ignore[arg-type,unused-ignore]


def test_stored_json_has_named_fields() -> None:
    body = msgspec.json.decode(encode_event(SAMPLES[0]))
    assert body["access"] == [{"resource": "website", "scopes": ["read:data"], "id": "w"}]
    assert body["secret_hash"] == "$argon2id$x" and body["at"] == "2026-05-01T12:00:00Z"


def test_older_json_without_new_optional_fields_still_decodes() -> None:
    old = b'{"type":"key.revoked","key_id":"k","at":"2026-05-01T12:00:00Z"}'
    assert decode_event(old) == KeyRevoked(key_id="k", at=AT)


def test_events_from_before_descriptions_and_tags_still_decode() -> None:
    old = (b'{"type":"key.created","key_id":"k","at":"2026-05-01T12:00:00Z","name":"n","secret_hash":"h",'
           b'"prefix":"kl","start":"kl_k"}')
    created = decode_event(old)
    assert isinstance(created, KeyCreated) and created.description == "" and created.tags == ()
    changed = decode_event(b'{"type":"key.access_changed","key_id":"k","at":"2026-05-01T12:00:00Z","name":"m"}')
    assert isinstance(changed, KeyAccessChanged) and changed.description is None and changed.tags is None
