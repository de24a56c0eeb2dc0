"""Redaction: no secret of a key or verify credential in free text (usage events, log lines).

A token is ``<prefix>_<body>`` (:mod:`keyledger.domain.token`); the first 16 characters of its body (the
key id and 4 secret characters) are public, in its ``start``. :func:`redact` replaces, wherever they
stand in a string,

* anything shaped like a full token of any prefix: a lowercase prefix of 1-16 characters, ``_``, and a
  run of at least 50 base62 characters (a token's body, perhaps followed by more);
* after one of the prefixes a deployment issues (its token prefix, the default ``kl`` and the verify
  credentials' ``klvc``), even glued to the characters before it: any run longer than a start's 16
  characters, such as a token cut short by a length limit;

with its start only: the prefix, ``_`` and the first 16 characters of the run. ``%5F`` counts as ``_``
(a percent-encoded path). Shorter runs under other prefixes stay as they are, so identifiers such as
``org_2NfXbT7Lk9QzPcR1mW3yV8sA4dE`` or ``usage_events_20261201`` are not altered (an identifier that
ends in an issued prefix, such as ``task_01HXYZ...`` under a prefix ``sk``, is cut: a missed secret is
the failure to avoid, a shortened identifier is not). Pure, no I/O.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from keyledger.domain.token import CREDENTIAL_PREFIX, DEFAULT_PREFIX, KEY_ID_LENGTH, START_SECRET_CHARS

ISSUED_PREFIXES = (DEFAULT_PREFIX, CREDENTIAL_PREFIX)
"""Redacted however short under any configuration: the default key prefix and verify credentials'."""

START_BODY = KEY_ID_LENGTH + START_SECRET_CHARS  # the body characters a start shows: 16
_FULL_BODY = 50  # a token's body: key id, secret, checksum (token.token_length)
_SEPARATOR = r"(?:_|%5[Ff])"
_BASE62 = "[0-9A-Za-z]"


@dataclass(frozen=True, slots=True)
class Redaction:
    """What one deployment redacts (built once by :func:`redaction_for`): full tokens of any prefix, and
    anything longer than a start after one of ``prefixes``; texts shorter than ``shortest`` hold neither."""

    prefixes: tuple[str, ...]
    shortest: int
    pattern: re.Pattern[str]


@functools.lru_cache(maxsize=16)
def redaction_for(token_prefix: str = DEFAULT_PREFIX) -> Redaction:
    """The redaction of a deployment whose keys have ``token_prefix`` (``KEYLEDGER_TOKEN_PREFIX``): its
    tokens, the default ``kl`` ones and verify credentials (``klvc``) are cut to their start however short;
    a full token of any other prefix too."""
    prefixes = tuple(dict.fromkeys((token_prefix, *ISSUED_PREFIXES)))
    issued = "|".join(re.escape(prefix) for prefix in sorted(prefixes, key=len, reverse=True))
    pattern = re.compile(
        rf"(?P<issued>{issued}){_SEPARATOR}(?P<issued_start>{_BASE62}{{{START_BODY}}}){_BASE62}+"
        rf"|(?P<any>[a-z][a-z0-9]{{0,15}}){_SEPARATOR}(?P<any_start>{_BASE62}{{{START_BODY}}})"
        rf"{_BASE62}{{{_FULL_BODY - START_BODY},}}")
    shortest = min(len(prefix) for prefix in prefixes) + 1 + START_BODY + 1
    return Redaction(prefixes=prefixes, shortest=shortest, pattern=pattern)


DEFAULT_REDACTION = redaction_for(DEFAULT_PREFIX)


_TOKEN_SHAPE = re.compile(rf"{_SEPARATOR}{_BASE62}{{{START_BODY + 1}}}")
find_token_shape = _TOKEN_SHAPE.search
"""``find_token_shape(text)``: where ``text`` has a ``_`` (or ``%5F``) followed by more characters of a
token's alphabet than a start shows, else None. Every text :func:`redact` changes has one; a quick test
(one short pattern, bound once) for the hot path, which calls it only on texts holding ``_`` or ``%``."""


def holds_token_shape(text: str) -> bool:
    """Whether :func:`find_token_shape` finds a place in ``text``."""
    return find_token_shape(text) is not None


def _start(match: re.Match[str]) -> str:
    if match["issued"] is not None:
        return f"{match['issued']}_{match['issued_start']}"
    return f"{match['any']}_{match['any_start']}"


def redact(text: str, redaction: Redaction = DEFAULT_REDACTION) -> str:
    """``text`` with every token-shaped part replaced by its start (see the module's docstring) under a
    deployment's ``redaction``; the same string when there is none (checked by :func:`find_token_shape`
    before the full pattern runs)."""
    if len(text) < redaction.shortest or find_token_shape(text) is None:
        return text
    return redaction.pattern.sub(_start, text)
