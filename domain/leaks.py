"""Leaked secrets: finding keyledger tokens and verify credentials in any text, and the answers a code host's
secret scanning expects. Pure: no I/O.

A token is ``<prefix>_`` + 50 base62 characters whose last 6 are the CRC32 of the rest
(:mod:`keyledger.domain.token`), so a look-alike string is told apart without any lookup: only text that
passes the checksum is a finding (a random string passes once in about 2**32 tries).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Literal

import msgspec

from keyledger.domain import token
from keyledger.domain.redaction import ISSUED_PREFIXES

Kind = Literal["key", "verify_credential"]
TRUE_POSITIVE, FALSE_POSITIVE = "true_positive", "false_positive"
_BODY = token.KEY_ID_LENGTH + token.SECRET_LENGTH + token.CHECKSUM_LENGTH


class FoundToken(msgspec.Struct, frozen=True, kw_only=True):
    """A well-formed token found in a text: where (``offset``, 1-based ``line``), what it is and its public
    ``start``. ``token`` is the whole secret, for a report to the key service only; repr and str hide it."""

    offset: int
    line: int
    kind: Kind
    prefix: str
    key_id: str
    start: str
    token: str

    def __repr__(self) -> str:
        return f"FoundToken(line={self.line}, kind={self.kind!r}, start={self.start!r}, token='***')"

    __str__ = __repr__


def prefixes_for(token_prefix: str = token.DEFAULT_PREFIX, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The prefixes to look for: a deployment's key prefix, the default ``kl``, verify credentials' ``klvc``
    and any ``extra`` ones."""
    found = tuple(dict.fromkeys((token_prefix, *ISSUED_PREFIXES, *extra)))
    bad = [prefix for prefix in found if not token.is_valid_prefix(prefix)]
    if bad:
        raise ValueError(f"not a token prefix: {bad[0][:20]!r}")
    return found


def _pattern(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(prefix) for prefix in sorted(prefixes, key=len, reverse=True))
    return re.compile(rf"(?P<prefix>{names})_(?P<body>[0-9A-Za-z]{{{_BODY}}})")


_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def kind_of(prefix: str) -> Kind:
    """A verify credential (``klvc``) or a key (any other prefix)."""
    return "verify_credential" if prefix == token.CREDENTIAL_PREFIX else "key"


def find_tokens(text: str, prefixes: tuple[str, ...] = ISSUED_PREFIXES) -> Iterator[FoundToken]:
    """Every token under one of ``prefixes`` in ``text`` whose checksum holds, in order. A token glued to the
    characters around it counts too (the checksum decides, not the surroundings)."""
    pattern = _PATTERNS.get(prefixes)
    if pattern is None:
        pattern = _PATTERNS.setdefault(prefixes, _pattern(prefixes))
    line, counted = 1, 0
    for match in pattern.finditer(text):
        candidate = f"{match['prefix']}_{match['body']}"
        try:
            parsed = token.parse(candidate, match["prefix"])
        except token.MalformedToken:
            continue
        line += text.count("\n", counted, match.start())
        counted = match.start()
        yield FoundToken(offset=match.start(), line=line, kind=kind_of(parsed.prefix), prefix=parsed.prefix,
                         key_id=parsed.key_id, start=parsed.start(), token=candidate)


def parse_reported(reported: str, key_prefix: str) -> token.ParsedToken | None:
    """A reported string as a token of this deployment (a key under ``key_prefix`` or a verify credential),
    or None when it is neither or its checksum fails: such a report needs no lookup."""
    if not isinstance(reported, str):
        return None
    prefix = reported.partition("_")[0]
    if prefix not in (key_prefix, token.CREDENTIAL_PREFIX):
        return None
    try:
        return token.parse(reported, prefix)
    except token.MalformedToken:
        return None


def token_hash(reported: str) -> str:
    """The SHA-256 (hex) of a reported token, as the code host's feedback names it (never the token)."""
    return hashlib.sha256(reported.encode("utf-8", "surrogatepass")).hexdigest()


def feedback(reported: str, token_type: str, confirmed: bool) -> dict[str, str]:
    """One entry of GitHub's secret-scanning feedback: ``{token_hash, token_type, label}``."""
    return {"token_hash": token_hash(reported), "token_type": token_type,
            "label": TRUE_POSITIVE if confirmed else FALSE_POSITIVE}
