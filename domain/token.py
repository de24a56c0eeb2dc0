"""API-key token format: ``<prefix>_<key_id><secret><checksum>``.

Pure: no I/O, no clock, no randomness of its own (callers inject ``random_bytes``).

* alphabet: base62 ``0-9A-Za-z`` (safe in headers and URLs);
* body: key id (12 chars) + secret (32 chars) + checksum (6 chars) = 50 chars;
* checksum: CRC32 of ``f"{prefix}_{key_id}{secret}"`` in base62, left-padded to 6 chars.

``parse`` rejects malformed tokens cheaply (O(len), no hashing beyond CRC32) before any
lookup, and its errors never echo any part of the token.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

import msgspec

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
DEFAULT_PREFIX = "kl"
CREDENTIAL_PREFIX = "klvc"  # verify credentials: the same format under a prefix of their own
START_SECRET_CHARS = 4  # secret characters shown in a key's ``start``

RandomBytes = Callable[[int], bytes]
"""A source of ``n`` uniformly random bytes, e.g. ``secrets.token_bytes``."""

_BODY_LENGTH = KEY_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH
_MAX_TOKEN_LENGTH = 200
_ALPHABET_SET = frozenset(ALPHABET)
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,15}")
_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)  # every 2-char base62 numeral, by value
_PAIR = len(_PAIRS)  # 62 ** 2
_KNOWN_PREFIXES: set[str] = set()  # expected prefixes already checked (settings: a handful per process)
# Largest multiple of 62 that fits in a byte: bytes below it map uniformly onto ALPHABET.
_SAMPLING_LIMIT = len(ALPHABET) * (256 // len(ALPHABET))  # 248


class MalformedToken(ValueError):
    """A token string that is not well formed; ``reason`` never contains any of it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ParsedToken(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The parts of a well-formed token. Its repr/str hide the secret. (A Struct: built on every verify, it
    costs a fifth of a frozen dataclass.)"""

    prefix: str
    key_id: str
    secret: str

    def start(self) -> str:
        """The identifying start of the token: prefix, key id and 4 secret chars."""
        return f"{self.prefix}_{self.key_id}{self.secret[:START_SECRET_CHARS]}"

    def __repr__(self) -> str:
        return f"ParsedToken(prefix={self.prefix!r}, key_id={self.key_id!r}, secret='***')"

    __str__ = __repr__


def is_valid_prefix(prefix: str) -> bool:
    """True for a lowercase prefix of 1-16 chars, starting with a letter, without '_'."""
    return isinstance(prefix, str) and _PREFIX_RE.fullmatch(prefix) is not None


def _is_base62(value: str, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and _ALPHABET_SET.issuperset(value)


def is_key_id(value: str) -> bool:
    """True when ``value`` looks like a key id: exactly 12 base62 chars."""
    return _is_base62(value, KEY_ID_LENGTH)


def _random_chars(random_bytes: RandomBytes, count: int) -> str:
    """``count`` uniform base62 chars by rejection sampling of random bytes."""
    chars: list[str] = []
    while len(chars) < count:
        wanted = (count - len(chars)) * 2
        chunk = random_bytes(wanted)
        if len(chunk) != wanted:
            raise ValueError("random source returned the wrong number of bytes")
        for byte in chunk:
            if byte < _SAMPLING_LIMIT:
                chars.append(ALPHABET[byte % len(ALPHABET)])
                if len(chars) == count:
                    break
    return "".join(chars)


def new_key_id(random_bytes: RandomBytes) -> str:
    """A fresh random key id (12 base62 chars)."""
    return _random_chars(random_bytes, KEY_ID_LENGTH)


def new_secret(random_bytes: RandomBytes) -> str:
    """A fresh random secret (32 base62 chars, about 190 bits)."""
    return _random_chars(random_bytes, SECRET_LENGTH)


def checksum(prefix: str, key_id: str, secret: str) -> str:
    """CRC32 of ``prefix_key_idsecret`` as 6 base62 chars (left-padded with '0')."""
    return _base62_checksum(zlib.crc32(f"{prefix}_{key_id}{secret}".encode()))


def _base62_checksum(value: int) -> str:
    """A CRC32 (< 62**6) as 6 base62 chars, from three 2-char numerals."""
    high, low = divmod(value, _PAIR)
    return _PAIRS[high // _PAIR] + _PAIRS[high % _PAIR] + _PAIRS[low]


def format_token(prefix: str, key_id: str, secret: str) -> str:
    """Assemble ``prefix_`` + key id + secret + checksum; ValueError on invalid parts."""
    if not is_valid_prefix(prefix):
        raise ValueError("invalid token prefix")
    if not is_key_id(key_id):
        raise ValueError("invalid key id")
    if not _is_base62(secret, SECRET_LENGTH):
        raise ValueError("invalid secret")
    return f"{prefix}_{key_id}{secret}{checksum(prefix, key_id, secret)}"


def generate(
    random_bytes: RandomBytes, prefix: str = DEFAULT_PREFIX, key_id: str | None = None
) -> str:
    """A new token; with ``key_id`` (rotation) keep that id and draw only a new secret."""
    if not is_valid_prefix(prefix):
        raise ValueError("invalid token prefix")
    if key_id is None:
        key_id = new_key_id(random_bytes)
    return format_token(prefix, key_id, new_secret(random_bytes))


def token_length(prefix: str) -> int:
    """How long every well-formed token under ``prefix`` is."""
    return len(prefix) + 1 + _BODY_LENGTH


def start_length(prefix: str) -> int:
    """How long a token's ``start`` is under ``prefix``: prefix, ``_``, key id and a few secret chars."""
    return len(prefix) + 1 + KEY_ID_LENGTH + START_SECRET_CHARS


def parse(token: str, expected_prefix: str = DEFAULT_PREFIX) -> ParsedToken:
    """Split a token into its parts, or raise MalformedToken (cheap: O(len), CRC32 only)."""
    if not isinstance(token, str):
        raise MalformedToken("token must be a string")
    if len(token) > _MAX_TOKEN_LENGTH:
        raise MalformedToken("token is too long")
    if expected_prefix not in _KNOWN_PREFIXES:
        if not is_valid_prefix(expected_prefix):
            raise ValueError("invalid expected prefix")
        if len(_KNOWN_PREFIXES) < 64:
            _KNOWN_PREFIXES.add(expected_prefix)
    if not token:
        raise MalformedToken("token is empty")
    if not token.isascii():
        raise MalformedToken("token contains non-ASCII characters")
    prefix, separator, body = token.partition("_")
    if not separator:
        raise MalformedToken("token has no prefix separator")
    if prefix != expected_prefix:
        raise MalformedToken("token has an unexpected prefix")
    if len(body) != _BODY_LENGTH:
        raise MalformedToken("token has the wrong length")
    if not body.isalnum():  # ASCII (checked above) letters and digits: exactly the base62 alphabet
        raise MalformedToken("token contains invalid characters")
    key_id = body[:KEY_ID_LENGTH]
    secret = body[KEY_ID_LENGTH : KEY_ID_LENGTH + SECRET_LENGTH]
    # the CRC32 of everything before the checksum (the token's own prefix, "_", key id and secret); it is no
    # secret (anyone holding the token can compute it), so a plain comparison is fine
    if body[-CHECKSUM_LENGTH:] != _base62_checksum(zlib.crc32(token[:-CHECKSUM_LENGTH].encode())):
        raise MalformedToken("token checksum does not match")
    return ParsedToken(prefix=prefix, key_id=key_id, secret=secret)
