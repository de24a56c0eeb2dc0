"""The key cache in two forms: recently used keys as KeyState objects, every other key as a few bytes.

A KeyState object costs about 670-900 bytes (24 fields, strings, datetimes, access entries); a million
keys would hold most of a gigabyte. :class:`CompactKeys` keeps at most ``hot_limit`` states as objects
(``hot``: a plain dict, the warm verify path's one lookup) and every other key encoded (``cold``): a
msgpack array of its fields, without its id (the dict's key), with scopes and resources as small
numbers, an argon2 hash as its raw salt and digest under a shared parameter string, and values many keys
share (organization, prefix, owner, tags, networks, credits) as indexes into one table of such values.

Every key is in exactly one of the two dicts, so a new state (a revocation) replaces the only copy,
whichever form it is in. Using a cold key (:meth:`CompactKeys.use`, a verify) decodes it and moves it into
``hot`` (the oldest hot key is encoded back when ``hot`` is full); ``get``, ``[]`` and iterating decode
without moving anything, and listing (:meth:`CompactKeys.states`) keeps what it decodes only while ``hot``
has room, so folding events or listing keys never churns the hot set.
"""

from __future__ import annotations

import binascii
from bisect import insort
from collections.abc import Iterable, Iterator, MutableMapping
from datetime import datetime
from typing import Any

import msgspec

from keyledger.domain.access import RESOURCES, SCOPES, AccessEntry
from keyledger.domain.key import KeyState

HOT_LIMIT = 100_000  # KeyState objects kept at most (about 90 MB); the rest stay encoded
SORTED_LISTS = 1_000  # sorted id lists (every key's, an organization's) kept at most

_FIELDS = ("key_id", "version", "name", "organization_id", "access", "expires_at", "secret_hash", "prefix",
           "start", "created_at", "updated_at", "previous_hash", "previous_valid_until", "revoked_at",
           "revoke_reason", "rate_limit", "description", "tags", "allowed_networks", "credits", "credits_set_at",
           "credits_version", "owner_id", "import_lookup")
if KeyState.__struct_fields__ != _FIELDS:  # a new KeyState field must be encoded here too, or it would be lost
    raise RuntimeError(f"projections.compact_keys does not encode KeyState{KeyState.__struct_fields__}")

_SCOPES = sorted(SCOPES)
_SCOPE_INDEX = {scope: i for i, scope in enumerate(_SCOPES)}
_RESOURCES = sorted(RESOURCES)
_RESOURCE_INDEX = {resource: i for i, resource in enumerate(_RESOURCES)}
_encode = msgspec.msgpack.Encoder().encode
_NOTHING_LATER = [None] * 13  # the fields after updated_at, none of them set


class _Head(msgspec.Struct, array_like=True):
    """The first fields of an encoded key (the rest are skipped, not decoded)."""

    version: int
    name: str
    organization: int | None = None


_head = msgspec.msgpack.Decoder(_Head).decode
_decode = msgspec.msgpack.Decoder().decode


class SharedValues:
    """Values many keys hold (organization ids, prefixes, owners, tag and network tuples, credits), each
    stored once; keys hold their index. Append-only: an index never changes meaning."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._index: dict[Any, int] = {}

    def find(self, value: Any) -> int | None:
        """The index of ``value`` if it is held (never adds it)."""
        return self._index.get(value)

    def index(self, value: Any) -> int | None:
        """The index of ``value`` (added if new); None for None and empty tuples."""
        if value is None or value == ():
            return None
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.values)
            self.values.append(value)
        return found


def _hash_in(secret_hash: str | None, shared: SharedValues) -> Any:
    """``[parameters index, raw salt + digest]`` for an argon2 hash (exact round trip checked), else the text."""
    if secret_hash is None or not secret_hash.startswith("$argon2"):
        return secret_hash
    head, _, b64 = secret_hash.rpartition("$")
    params, _, salt = head.rpartition("$")
    try:
        raw_salt, raw_digest = binascii.a2b_base64(salt + "=" * (-len(salt) % 4)), \
            binascii.a2b_base64(b64 + "=" * (-len(b64) % 4))
    except binascii.Error:
        return secret_hash
    if _b64(raw_salt) != salt or _b64(raw_digest) != b64:
        return secret_hash
    return [shared.index(params), len(raw_salt), raw_salt + raw_digest]


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode().rstrip("=")


def _hash_out(value: Any, shared: list[Any]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    params, salt_length, raw = value
    return f"{shared[params]}${_b64(raw[:salt_length])}${_b64(raw[salt_length:])}"


_KNOWN_SCOPES: dict[tuple[str, ...], bytes | None] = {}  # scope tuples seen: their bytes (None: a name not known)
_KNOWN_SCOPES_MAX = 4_096  # distinct tuples remembered at most (names the codec does not know can be many)


def _scopes_in(scopes: tuple[str, ...]) -> bytes | None:
    """The scopes as one byte each, or None when one is not a known name; remembered per tuple (a load of a
    million keys meets a handful of distinct tuples)."""
    found = _KNOWN_SCOPES.get(scopes, b"")
    if found == b"":
        found = None if any(scope not in _SCOPE_INDEX for scope in scopes) else \
            bytes(_SCOPE_INDEX[scope] for scope in scopes)
        if len(_KNOWN_SCOPES) < _KNOWN_SCOPES_MAX:
            _KNOWN_SCOPES[scopes] = found
    return found


def _access_in(access: tuple[AccessEntry, ...]) -> list[Any]:
    out: list[Any] = []
    for entry in access:
        resource, scopes = _RESOURCE_INDEX.get(entry.resource), entry.scopes
        known = None if resource is None else _scopes_in(scopes)
        if known is None:
            out.append([entry.resource, entry.id, list(scopes)])  # not a known name: kept as written
        else:
            out.append([resource, entry.id, known])
    return out


def _access_out(encoded: list[Any]) -> tuple[AccessEntry, ...]:
    return tuple(
        AccessEntry(resource=_RESOURCES[resource] if isinstance(resource, int) else resource, id=id_,
                    scopes=tuple(_SCOPES[i] for i in scopes) if isinstance(scopes, bytes) else tuple(scopes))
        for resource, id_, scopes in encoded)


def encode(state: KeyState, shared: SharedValues) -> bytes:
    """``state`` without its key id, as compact bytes (:func:`decode` gives it back, equal)."""
    own_start = f"{state.prefix}_{state.key_id}"
    start: Any = state.start[len(own_start):] if state.start.startswith(own_start) else [state.start]
    index = shared.index
    fields: list[Any] = [
        state.version, state.name, index(state.organization_id), _access_in(state.access), state.expires_at,
        _hash_in(state.secret_hash, shared), index(state.prefix), start, state.created_at,
        None if state.updated_at == state.created_at else state.updated_at,
        None if state.previous_hash is None else _hash_in(state.previous_hash, shared),
        state.previous_valid_until, state.revoked_at, state.revoke_reason, state.rate_limit,
        state.description or None, index(state.tags) if state.tags else None,
        index(state.allowed_networks) if state.allowed_networks else None,
        None if state.credits is None else index(state.credits), state.credits_set_at,
        state.credits_version or None, None if state.owner_id is None else index(state.owner_id),
        state.import_lookup]
    if fields[10:] == _NOTHING_LATER:  # most keys: nothing set after updated_at
        del fields[10:]
    while fields[-1] is None:
        fields.pop()
    return _encode(fields)


def decode(key_id: str, blob: bytes, shared: list[Any]) -> KeyState:
    """The KeyState that :func:`encode` wrote as ``blob`` for ``key_id``."""
    f: list[Any] = _decode(blob)
    f.extend([None] * (23 - len(f)))
    prefix: str = shared[f[6]]
    raw_start = f[7]
    start = raw_start[0] if isinstance(raw_start, list) else f"{prefix}_{key_id}{raw_start}"
    created: datetime = f[8]
    return KeyState(
        key_id=key_id, version=f[0], name=f[1], organization_id=None if f[2] is None else shared[f[2]],
        access=_access_out(f[3]), expires_at=f[4], secret_hash=_hash_out(f[5], shared) or "", prefix=prefix,
        start=start, created_at=created, updated_at=created if f[9] is None else f[9],
        previous_hash=_hash_out(f[10], shared), previous_valid_until=f[11], revoked_at=f[12],
        revoke_reason=f[13], rate_limit=f[14], description=f[15] or "",
        tags=() if f[16] is None else shared[f[16]], allowed_networks=() if f[17] is None else shared[f[17]],
        credits=None if f[18] is None else shared[f[18]], credits_set_at=f[19], credits_version=f[20] or 0,
        owner_id=None if f[21] is None else shared[f[21]], import_lookup=f[22])


class CompactKeys(MutableMapping[str, KeyState]):
    """Every key's state by id: ``hot`` KeyStates (at most ``hot_limit``), the rest encoded in ``cold``."""

    def __init__(self, states: Iterable[KeyState] = (), hot_limit: int = HOT_LIMIT) -> None:
        self.hot: dict[str, KeyState] = {}
        self.cold: dict[str, bytes] = {}
        self.hot_limit = hot_limit
        self._shared = SharedValues()
        self._sorted: dict[str | None, list[str]] = {}  # sorted_ids' lists, by organization (None: every key)
        for state in states:
            self.put_cold(state)

    def put_cold(self, state: KeyState) -> None:
        """Hold ``state`` encoded (a load: nothing is used yet), replacing any form of it."""
        if self._sorted and state.key_id not in self:
            self._added(state.key_id, state.organization_id)
        self.hot.pop(state.key_id, None)
        self.cold[state.key_id] = encode(state, self._shared)

    def sorted_ids(self, organization_id: str | None = None) -> list[str]:
        """Every key's id in order, or with ``organization_id`` only that organization's keys' ids: found once
        (an organization's by reading each cold key's organization alone, not the whole key) and then kept in
        order as keys are added, so that paging through a million keys decodes only the page's. At most
        :data:`SORTED_LISTS` lists are kept (8 bytes a key each); past that they are found again."""
        found = self._sorted.get(organization_id)
        if found is None:
            if organization_id is None:
                found = sorted([*self.hot, *self.cold])
            else:
                hot, cold = self._of(organization_id)
                found = sorted([*(state.key_id for state in hot), *(key_id for key_id, _ in cold)])
            if len(self._sorted) >= SORTED_LISTS:
                self._sorted.clear()
            self._sorted[organization_id] = found
        return found

    def _of(self, organization_id: str) -> tuple[list[KeyState], list[tuple[str, bytes]]]:
        """The organization's hot states and cold ``(key id, bytes)``; a cold key's organization is read alone,
        without decoding the rest of the key."""
        hot = [state for state in self.hot.values() if state.organization_id == organization_id]
        wanted = self._shared.find(organization_id)
        if wanted is None:  # no key was ever encoded with that organization
            return hot, []
        head = _head
        return hot, [(key_id, blob) for key_id, blob in self.cold.items() if head(blob).organization == wanted]

    def _added(self, key_id: str, organization_id: str | None) -> None:
        """A new key: into the sorted id lists kept (every key's, and its organization's)."""
        for wanted in {None, organization_id}:
            ids = self._sorted.get(wanted)
            if ids is not None:
                insort(ids, key_id)

    def get(self, key_id: str, default: Any = None) -> Any:
        """The key's state, or ``default``; a cold key is decoded and stays cold (what folding events uses)."""
        state = self.hot.get(key_id)
        if state is not None:
            return state
        blob = self.cold.get(key_id)
        return default if blob is None else decode(key_id, blob, self._shared.values)

    def use(self, key_id: str) -> KeyState | None:
        """The key's state, or None; a cold key is decoded and kept hot from now on (what verifying uses)."""
        state = self.hot.get(key_id)
        if state is not None:
            return state
        blob = self.cold.get(key_id)
        if blob is None:
            return None
        state = decode(key_id, blob, self._shared.values)
        self._heat(key_id, state)
        return state

    def __getitem__(self, key_id: str) -> KeyState:
        state = self.get(key_id)
        if state is None:
            raise KeyError(key_id)
        return state  # type: ignore[no-any-return]

    def __setitem__(self, key_id: str, state: KeyState) -> None:
        """The key's new state replaces its only copy: kept hot if it was hot, else encoded."""
        if key_id in self.hot:
            self.hot[key_id] = state
        else:
            if self._sorted and key_id not in self.cold:
                self._added(key_id, state.organization_id)
            self.cold[key_id] = encode(state, self._shared)

    def __delitem__(self, key_id: str) -> None:
        self._sorted.clear()
        if self.hot.pop(key_id, None) is None:
            del self.cold[key_id]

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.hot or key_id in self.cold

    def __len__(self) -> int:
        return len(self.hot) + len(self.cold)

    def __iter__(self) -> Iterator[str]:
        yield from list(self.hot)
        yield from list(self.cold)

    def states(self, organization_id: str | None = None) -> Iterator[KeyState]:
        """Every key's state, or with ``organization_id`` that organization's keys' states; cold ones decoded
        one at a time (another organization's cold keys are skipped by their organization alone, a tenth of the
        cost of decoding them) and kept decoded while the hot set has room, never evicting a hot key for one."""
        hot_states, cold_keys = ((list(self.hot.values()), list(self.cold.items())) if organization_id is None
                                 else self._of(organization_id))
        yield from hot_states
        values, hot, cold = self._shared.values, self.hot, self.cold
        for key_id, blob in cold_keys:
            state = decode(key_id, blob, values)
            if len(hot) < self.hot_limit and cold.get(key_id) is blob:  # room to spare: the next listing finds
                del cold[key_id]                                          # it decoded, evicting nothing
                hot[key_id] = state
            yield state

    def _heat(self, key_id: str, state: KeyState) -> None:
        del self.cold[key_id]
        hot = self.hot
        while len(hot) >= self.hot_limit > 0:
            oldest = next(iter(hot))
            self.cold[oldest] = encode(hot.pop(oldest), self._shared)
        if self.hot_limit > 0:
            hot[key_id] = state
        else:
            self.cold[key_id] = encode(state, self._shared)
