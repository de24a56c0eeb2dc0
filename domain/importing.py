"""Keys brought in from another key service (pure): the import and re-hash commands and their events.

An imported key keeps its source's secret: its ``key.created`` holds the source's SHA-256 as
``sha256:<64 hex digits>``, followed in the same append by ``key.imported {source, source_id}`` (and
``key.revoked`` when the source had it disabled or revoked). Its key id is derived from the source, the
organization and the source's key id, so importing the same line again finds the key already there.
The first verify that presents the secret replaces the SHA-256 by an argon2id hash (``key.rehashed``).
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime

import msgspec

from keyledger.domain import token
from keyledger.domain.commands import CreateKey, check_create
from keyledger.domain.errors import ConcurrencyError, KeyAlreadyExists, KeyNotFound, ValidationError
from keyledger.domain.events import AnyEvent, KeyCreditsSet, KeyImported, KeyRehashed, KeyRevoked
from keyledger.domain.key import SHA256_HASH, KeyState, _created

SOURCES = ("databuddy", "better-auth", "unkey", "keyledger")
ARGON2_HASH = "$argon2id$"
MAX_SOURCE_ID_LENGTH = 256


class ImportKey(msgspec.Struct, frozen=True, kw_only=True):
    """Create ``create.key_id`` as the key ``source_id`` of ``source``; ``disabled``: why the source no
    longer accepted it (the key is imported revoked, with that reason), None when it was enabled."""

    create: CreateKey
    source: str
    source_id: str
    disabled: str | None = None


class RehashKey(msgspec.Struct, frozen=True, kw_only=True):
    """Replace an imported key's SHA-256 by the argon2id hash ``secret_hash`` of the same secret."""

    key_id: str
    secret_hash: str


def derived_key_id(source: str, organization_id: str | None, source_id: str) -> str:
    """The keyledger key id of an imported key: 12 base62 characters from a SHA-256 of where it came from,
    the same every time (what makes an import idempotent)."""
    digest = hashlib.sha256(f"{source}\0{organization_id or ''}\0{source_id}".encode()).digest()
    return "".join(token.ALPHABET[byte % len(token.ALPHABET)] for byte in digest[:token.KEY_ID_LENGTH])


def sha256_hash(value: object, field: str, encoding: str) -> str:
    """``sha256:<hex>`` from a source's stored SHA-256 (``encoding``: hex, base64 or base64url, with or
    without padding); ValidationError naming ``field`` when it is not 32 bytes in that encoding."""
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{field} is missing: the key's stored SHA-256 is needed")
    try:
        if encoding == "hex":
            raw = bytes.fromhex(value)
        else:
            padded = value + "=" * (-len(value) % 4)
            raw = base64.b64decode(padded, altchars=b"-_" if encoding == "base64url" else None, validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValidationError(f"{field} is not a SHA-256 in {encoding} (32 bytes)")
    return SHA256_HASH + raw.hex()


# what an imported argon2id hash may ask of every verify of its key: whoever imports chooses the parameters,
# and a verify runs them (a hash asking for 4 GiB and a thousand passes would hold an argon2 thread for minutes)
MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_TIME, MAX_ARGON2_LANES = 262_144, 10, 16
_ARGON2 = re.compile(r"\$argon2id\$v=19\$m=(\d{1,7}),t=(\d{1,3}),p=(\d{1,3})"
                     r"\$[A-Za-z0-9+/]{11,86}\$[A-Za-z0-9+/]{22,86}")


def check_argon2_hash(secret_hash: str) -> None:
    """An argon2id hash (version 19, PHC string) whose cost stays within what keyledger runs for a verify:
    memory at most 256 MiB, at most 10 passes and 16 lanes, a salt of 8 to 64 bytes, a digest of 16 to 64."""
    found = _ARGON2.fullmatch(secret_hash)
    if found is None:
        raise ValidationError("secret_hash must be an argon2id hash: $argon2id$v=19$m=...,t=...,p=...$salt$digest")
    memory, passes, lanes = (int(found.group(i)) for i in (1, 2, 3))
    if not (1 <= lanes <= MAX_ARGON2_LANES and 1 <= passes <= MAX_ARGON2_TIME
            and 8 * lanes <= memory <= MAX_ARGON2_MEMORY_KIB):
        raise ValidationError(f"secret_hash asks for more than a verify may spend: at most m={MAX_ARGON2_MEMORY_KIB} "
                              f"(KiB), t={MAX_ARGON2_TIME}, p={MAX_ARGON2_LANES}")


def check_import(command: ImportKey, now: datetime) -> ImportKey:
    """Validate an import: a known source, a source id, a SHA-256 (or, from keyledger, argon2id) hash, and
    a key :func:`~keyledger.domain.commands.check_create` accepts."""
    if command.source not in SOURCES:
        raise ValidationError(f"format must be one of {', '.join(SOURCES)}")
    if not command.source_id or len(command.source_id) > MAX_SOURCE_ID_LENGTH:
        raise ValidationError(f"the source's key id must be 1 to {MAX_SOURCE_ID_LENGTH} characters")
    secret_hash = command.create.secret_hash
    sha = secret_hash.startswith(SHA256_HASH) and len(secret_hash) == 71
    if not sha and not (command.source == "keyledger" and secret_hash.startswith(ARGON2_HASH)):
        raise ValidationError("the secret hash must be a SHA-256 (or, from keyledger, an argon2id hash)")
    if not sha:
        check_argon2_hash(secret_hash)
    if not token.is_key_id(command.create.key_id):
        raise ValidationError("id must be a keyledger key id (12 characters of 0-9, A-Z, a-z)")
    return msgspec.structs.replace(command, create=check_create(command.create, now))


def decide_import(state: KeyState | None, command: ImportKey, now: datetime) -> list[AnyEvent]:
    """``key.created`` + ``key.imported`` (+ ``key.revoked`` for a key its source had disabled);
    KeyAlreadyExists when the key is there already (imported before)."""
    if state is not None:
        raise KeyAlreadyExists(f"key {command.create.key_id} already exists")
    checked = check_import(command, now)
    key_id = checked.create.key_id
    events: list[AnyEvent] = [_created(checked.create, now),
                              KeyImported(key_id=key_id, at=now, source=checked.source, source_id=checked.source_id)]
    if checked.create.credits is not None:
        events.append(KeyCreditsSet(key_id=key_id, at=now, credits=checked.create.credits))
    if checked.disabled is not None:
        events.append(KeyRevoked(key_id=key_id, at=now, reason=checked.disabled))
    return events


def decide_rehash(state: KeyState | None, command: RehashKey, now: datetime) -> list[AnyEvent]:
    """``key.rehashed``; ConcurrencyError when the key holds no SHA-256 any more (another replica re-hashed
    it first), ValidationError for a hash that is not argon2id."""
    if state is None:
        raise KeyNotFound(f"key {command.key_id} not found")
    if not state.secret_hash.startswith(SHA256_HASH):
        raise ConcurrencyError(f"key {command.key_id} was re-hashed already")
    if not command.secret_hash.startswith(ARGON2_HASH):
        raise ValidationError("a re-hash must be argon2id")
    return [KeyRehashed(key_id=state.key_id, at=now, secret_hash=command.secret_hash)]
