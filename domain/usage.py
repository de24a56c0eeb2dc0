"""Usage events: one per verification and per authenticated API call (never a secret: every text field
passes :func:`sanitized` or :func:`storable`, which redact anything shaped like a token to its start)."""

from __future__ import annotations

import operator
import re
from collections import defaultdict
from datetime import datetime

import msgspec

from keyledger.domain.access import MAX_RESOURCE_ID_LENGTH
from keyledger.domain.redaction import DEFAULT_REDACTION, Redaction, find_token_shape, redact

START_LENGTH_OF_MALFORMED = 8  # how much of an unparseable token is kept: never enough to matter


class UsageEvent(msgspec.Struct, frozen=True):
    """Who used which key for what, from where, and what keyledger answered.

    ``start`` is the key's ``start`` (prefix, key id and 4 secret characters) or, for a
    token that did not parse, at most its first 8 characters. Build it with keywords; the verify flow
    alone passes its fields by position (in this order: several times faster than 17 keywords, on every
    verify's path).
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
    credits_spent: int = 0  # usage credits this verify spent (``cost`` when VALID on a key with credits)


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
    character, within its limit); the same object when nothing needed a change.

    It is on every verify's path, so the common case is checked with few calls: the texts that recur from
    event to event (the action, outcome, key, scope, grant, reason, website, data kind and caller) are checked
    together once and then remembered (:data:`_STORABLE`); only the others (the event's id, the request id,
    the client's ip, user agent and address) are checked every time (an id holding a ``_`` or ``%`` takes
    the long way)."""
    shortest = redaction.shortest
    recurring = _recurring(event)
    if recurring in _STORABLE[shortest] and len(own := event.id) <= _ID and own.isprintable() \
            and "_" not in own and "%" not in own \
            and ((request_id := event.request_id) is None or _fits(request_id, _REQUEST_ID, shortest)) \
            and ((ip := event.ip) is None or _fits(ip, _IP, shortest)) \
            and ((agent := event.user_agent) is None or _fits(agent, _USER_AGENT, shortest)) \
            and ((caller_ip := event.caller_ip) is None or _fits(caller_ip, _CALLER_IP, shortest)):
        return event
    texts = _text_fields(event)
    for value, limit in zip(texts, _LIMITS, strict=True):  # _fits, without a call per field
        if value is not None and ((size := len(value)) > limit or not value.isprintable() or size >= shortest
                                  and ("_" in value or "%" in value) and find_token_shape(value) is not None):
            break
    else:
        remembered = _STORABLE[shortest]
        if len(remembered) >= _REMEMBER:  # callers choose some of these texts: they cannot grow the set
            remembered.clear()
        remembered.add(recurring)
        return event
    changes = {name: cleaned for name, limit, value in zip(FIELD_LIMITS, _LIMITS, texts, strict=True)
               if value is not None and (cleaned := clean_text(value, limit, redaction)) != value}
    return msgspec.structs.replace(event, **changes) if changes else event


def _fits(value: str, limit: int, shortest: int) -> bool:
    """Whether ``value`` is storable as it is in a field of ``limit`` characters (:func:`clean_text` would
    leave it so): within the limit, printable, and too short to hold a secret or without a ``_``/``%``
    that starts a token's shape. Only ``shortest`` of the redaction matters."""
    size = len(value)
    return size <= limit and value.isprintable() and not (
        size >= shortest and ("_" in value or "%" in value) and find_token_shape(value) is not None)


_CHANGING = ("id", "request_id", "ip", "user_agent", "caller_ip")  # new with (nearly) every event
_text_fields, _LIMITS = operator.attrgetter(*FIELD_LIMITS), tuple(FIELD_LIMITS.values())
_recurring = operator.attrgetter(*(name for name in FIELD_LIMITS if name not in _CHANGING))
_ID, _REQUEST_ID, _IP, _USER_AGENT, _CALLER_IP = (FIELD_LIMITS[name] for name in _CHANGING)
_REMEMBER = 65_536
_STORABLE: defaultdict[int, set[tuple[str | None, ...]]] = defaultdict(set)
"""By a redaction's ``shortest`` (all that :func:`sanitized`'s check depends on): the recurring texts of
events found storable as they are, each in its own field."""
