"""Usage events: one per verification and per authenticated API call (never a secret: every text field
passes :func:`sanitized` or :func:`storable`, which redact anything shaped like a token to its start)."""

from __future__ import annotations

import operator
import re
from datetime import datetime

import msgspec

from keyledger.domain.access import MAX_RESOURCE_ID_LENGTH
from keyledger.domain.redaction import DEFAULT_REDACTION, Redaction, find_token_shape, redact

START_LENGTH_OF_MALFORMED = 8  # how much of an unparseable token is kept: never enough to matter


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Who used which key for what, from where, and what keyledger answered.

    ``start`` is the key's ``start`` (prefix, key id and 4 secret characters) or, for a
    token that did not parse, at most its first 8 characters.
    """

    id: str  # uuid, hex
    at: datetime
    action: str  # "verify", or the API call, e.g. "POST /v1/keys"
    outcome: str  # VALID / OK, MALFORMED, NOT_FOUND, REVOKED, EXPIRED, FORBIDDEN, RATE_LIMITED, AUTH_REQUIRED...
    key_id: str | None = None
    start: str | None = None
    organization_id: str | None = None
    scope: str | None = None
    granted_by: str | None = None  # the access entry that granted it, e.g. "website:abc"
    reason: str = ""  # why it was granted or refused
    website_id: str | None = None
    data: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    caller: str | None = None  # who called verify: credential:<id>, key:<id>, service-token or open
    caller_ip: str | None = None  # the socket address the call came from (``ip`` is what the caller forwards)


USAGE_COLUMNS: tuple[str, ...] = tuple(UsageEvent.__struct_fields__)

_batch_encoder = msgspec.json.Encoder()
_batch_decoder: msgspec.json.Decoder[list[UsageEvent]] = msgspec.json.Decoder(list[UsageEvent])


def encode_batch(events: list[UsageEvent]) -> bytes:
    """A batch of usage events as one JSON array (one NATS message)."""
    return _batch_encoder.encode(events)


def decode_batch(data: bytes) -> list[UsageEvent]:
    """The usage events of one message."""
    return _batch_decoder.decode(data)


def attempted_start(presented: str, start_length: int, well_formed: bool) -> str:
    """What may be recorded of a token that did not verify: a well-formed token's ``start``-long head
    (prefix, key id, a few characters); of anything else only what stands before its first ``_``
    (at most :data:`START_LENGTH_OF_MALFORMED` characters), never part of a secret."""
    if well_formed and len(presented) >= start_length:
        return presented[:start_length]
    prefix, underscore, _ = presented.partition("_")
    return prefix[:START_LENGTH_OF_MALFORMED] + underscore if underscore else ""


# The longest value kept per field; longer ones are cut (an attacker controls most of them). A verify
# request's scope, website id and data kind longer than theirs are refused (services.verify.call): no grant
# names a longer website id.
FIELD_LIMITS: dict[str, int] = {
    "id": 64, "action": 200, "outcome": 32, "key_id": 64, "start": 40, "organization_id": 200, "scope": 64,
    "granted_by": 300, "reason": 500, "website_id": MAX_RESOURCE_ID_LENGTH, "data": 64, "ip": 100, "user_agent": 300,
    "request_id": 100, "caller": 100, "caller_ip": 100,
}
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # control characters (NUL!) and lone surrogates
REPLACEMENT = "\ufffd"


def clean_text(value: str, limit: int, redaction: Redaction = DEFAULT_REDACTION) -> str:
    """``value`` as it may be stored: cut to ``limit`` characters, control characters and lone surrogates
    replaced by U+FFFD (Postgres refuses them), and every token-shaped part replaced by its start
    (:func:`~keyledger.domain.redaction.redact`, under the deployment's ``redaction``). Printable text within
    the limit that holds no ``_`` or ``%`` comes back as it is (the common case, without a call)."""
    if len(value) > limit:
        value = value[:limit]
    if not value.isprintable():
        value = _UNSTORABLE.sub(REPLACEMENT, value)
    if len(value) >= redaction.shortest and ("_" in value or "%" in value):
        return redact(value, redaction)
    return value


def storable(value: str | None, field: str, redaction: Redaction = DEFAULT_REDACTION) -> str | None:
    """``value`` of ``field`` as it may be stored (see :func:`clean_text`); None stays None. For building an
    event whose other fields need no cleaning (they come from the key cache or were validated)."""
    return None if value is None else clean_text(value, FIELD_LIMITS[field], redaction)


def sanitized(event: UsageEvent, redaction: Redaction = DEFAULT_REDACTION) -> UsageEvent:
    """``event`` with every text field made storable (see :func:`clean_text`: no secret, no control
    character, within its limit); the same object when nothing needed a change. The common case is checked
    without a call per field (it is on the hot path): a field needs work only when it is too long, not
    printable, or long enough to hold a secret and holds a ``_`` or ``%`` that starts a token's shape."""
    shortest = redaction.shortest
    for value, limit in zip(_text_fields(event), _LIMITS, strict=True):
        if value is not None and ((size := len(value)) > limit or not value.isprintable() or size >= shortest
                                  and ("_" in value or "%" in value) and find_token_shape(value) is not None):
            break
    else:
        return event
    changes = {name: cleaned for (name, limit), value in zip(FIELD_LIMITS.items(), _text_fields(event), strict=True)
               if value is not None and (cleaned := clean_text(value, limit, redaction)) != value}
    return msgspec.structs.replace(event, **changes) if changes else event


_text_fields = operator.attrgetter(*FIELD_LIMITS)
_LIMITS = tuple(FIELD_LIMITS.values())
