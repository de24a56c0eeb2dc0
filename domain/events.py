"""Key lifecycle events: frozen msgspec Structs with explicit, stable tags.

Only ever add fields, with defaults; never rename a tag. Stored as JSON with named fields.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.domain.access import AccessEntry
from keyledger.domain.credits import Credits


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Base of every key event: the key it belongs to and when it happened."""

    key_id: str
    at: datetime


class KeyCreated(Event, tag="key.created", frozen=True, kw_only=True):
    """A key came into being. ``secret_hash`` is the argon2id hash; never the secret."""

    name: str
    organization_id: str | None = None
    access: tuple[AccessEntry, ...] = ()
    expires_at: datetime | None = None
    secret_hash: str
    prefix: str
    start: str
    rate_limit: int | None = None  # requests per minute; None: the tier of its rate:* scope
    description: str = ""  # what the key is for (free text; events before it load as "")
    tags: tuple[str, ...] = ()  # short labels for finding keys (events before them load as none)
    allowed_networks: tuple[str, ...] = ()  # CIDRs the key may be used from (none: anywhere)
    owner_id: str | None = None  # who owns it in the customer's system (shares that owner's limits)


class KeyAccessChanged(Event, tag="key.access_changed", frozen=True, kw_only=True):
    """The key's access entries were replaced and/or its name, rate limit, description or tags changed."""

    access: tuple[AccessEntry, ...] | None = None
    name: str | None = None
    rate_limit: int | None = None  # None: unchanged; 0: back to the tier's limit
    description: str | None = None  # None: unchanged
    tags: tuple[str, ...] | None = None  # None: unchanged; (): no tags
    allowed_networks: tuple[str, ...] | None = None  # None: unchanged; (): from anywhere again
    owner_id: str | None = None  # None: unchanged; "": no owner any more


class KeyRotated(Event, tag="key.rotated", frozen=True, kw_only=True):
    """A new secret replaced the old one; the old one still works until ``previous_valid_until``."""

    secret_hash: str
    start: str
    previous_valid_until: datetime | None = None


class KeyRevoked(Event, tag="key.revoked", frozen=True, kw_only=True):
    """The key was revoked, irreversibly."""

    reason: str = ""


LEAK_SOURCES = ("github", "public", "scanner")  # who reports a leak: a code host, anyone, `keyledger leaks scan`


class KeyLeakReported(Event, tag="key.leak_reported", frozen=True, kw_only=True):
    """Someone showed that they hold one of the key's secrets (never stored here): a code host's secret
    scanning (``github``), anyone through the public report endpoint (``public``) or the scanner
    (``scanner``), found at ``url``. ``ended_grace``: the secret was the old one a rotation still kept
    working, whose grace period ends here (the current secret keeps working)."""

    source: str
    url: str = ""
    reporter: str = ""
    reported_at: datetime
    ended_grace: bool = False


class KeyImported(Event, tag="key.imported", frozen=True, kw_only=True):
    """The key was brought in from another key service (``source``: databuddy, better-auth, unkey or
    keyledger) where its id was ``source_id``; appended right after its ``key.created``, whose secret hash is
    that service's (``sha256:<hex>``) until the first verify re-hashes it (``key.rehashed``)."""

    source: str
    source_id: str


class KeyRehashed(Event, tag="key.rehashed", frozen=True, kw_only=True):
    """An imported key's SHA-256 secret hash was replaced by an argon2id hash of the same secret, on the first
    verify that presented it (``secret_hash``: the argon2id hash; never the secret)."""

    secret_hash: str


class KeyCreditsSet(Event, tag="key.credits_set", frozen=True, kw_only=True):
    """The key's usage credits were set (``credits``: the balance it starts with now and its refill rule) or
    removed (``credits`` None). Who set them is the event's metadata actor. Spending is not an event: each
    verify's usage event says what it spent; refills are recorded in ``credit_refills``."""

    credits: Credits | None = None


AnyEvent = (KeyCreated | KeyAccessChanged | KeyRotated | KeyRevoked | KeyLeakReported | KeyCreditsSet
            | KeyImported | KeyRehashed)
EVENT_CLASSES: tuple[type[Event], ...] = (KeyCreated, KeyAccessChanged, KeyRotated, KeyRevoked, KeyLeakReported,
                                          KeyCreditsSet, KeyImported, KeyRehashed)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def event_type(event: Event) -> str:
    """The stable tag of ``event``, e.g. ``"key.created"``."""
    return str(event.__struct_config__.tag)


def encode_event(event: Event) -> bytes:
    """Encode ``event`` as JSON bytes (includes its ``type`` tag)."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> AnyEvent:
    """Decode JSON produced by :func:`encode_event` back into the event Struct."""
    return _decoder.decode(data)
