"""Command handlers: load a key's state (the live cache's, or its stream), decide, append. The only place secrets are
born."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime

import msgspec

from keyledger.domain import token
from keyledger.domain.access import AccessEntry
from keyledger.domain.commands import (
    ChangeAccess,
    Command,
    CreateKey,
    ReportLeak,
    RevokeKey,
    RotateKey,
    check_create,
    check_rotate,
)
from keyledger.domain.credits import Credits
from keyledger.domain.errors import Busy, ConcurrencyError, DomainError, KeyAlreadyExists, KeyNotFound
from keyledger.domain.grants import check_grant, check_holds
from keyledger.domain.importing import ImportKey, decide_import
from keyledger.domain.key import KeyState, decide, ensure_open, evolve, fold
from keyledger.domain.rate import DEFAULT_TIERS
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.clock import Clock, utc_now
from keyledger.services.hashing import Argon2Queue, SecretHasher
from keyledger.services.storage.event_store import EventStore

EventsHook = Callable[[list[RecordedEvent]], None]
CommitBarrier = Callable[[int], Awaitable[object]]  # waits until every replica holds a global position
StateLookup = Callable[[str], KeyState | None]  # a key's current state in the live cache (None: not there)


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key together with its full secret token: exists only in a create/rotate response."""

    token: str
    state: KeyState

    def __repr__(self) -> str:
        return f"IssuedKey(key_id={self.state.key_id!r}, start={self.state.start!r}, token=***)"

    __str__ = __repr__


class KeyService:
    """Creates, re-scopes, rotates and revokes keys as events in the store."""

    def __init__(
        self,
        store: EventStore,
        hasher: SecretHasher,
        prefix: str = token.DEFAULT_PREFIX,
        random_bytes: token.RandomBytes = secrets.token_bytes,
        clock: Clock = utc_now,
        on_events: EventsHook | None = None,
        rate_tiers: Mapping[str, int] = DEFAULT_TIERS,
        queue: Argon2Queue | None = None,
        barrier: CommitBarrier | None = None,
        current: StateLookup | None = None,
    ) -> None:
        self._store, self._hasher, self._prefix = store, hasher, prefix
        self._random, self._clock = random_bytes, clock
        self._on_events = on_events  # e.g. the live cache applying its own writes at once
        self._tiers = rate_tiers
        self._queue = queue  # the API process's argon2 bound, shared with verify (None: unbounded, e.g. the CLI)
        self._barrier = barrier  # a command returns once every API replica holds its events (None: at once)
        # the live cache's states (None: read each key's stream): a command decides on the state the cache holds
        # and the append's version check catches a cache behind the store (409, as for any concurrent change)
        self._current = current

    async def create(
        self,
        name: str,
        *,
        organization_id: str | None = None,
        access: Sequence[AccessEntry] = (),
        expires_at: datetime | None = None,
        rate_limit: int | None = None,
        metadata: Metadata | None = None,
        grantor: KeyState | None = None,
        description: str = "",
        tags: Sequence[str] = (),
        allowed_networks: Sequence[str] = (),
        credits: Credits | None = None,
        owner_id: str | None = None,
    ) -> IssuedKey:
        """Create a key; validates first, then hashes the new secret off the event loop. ``grantor`` is
        the acting admin key (None: the operator), which may grant only what it holds (Forbidden)."""
        secret = token.generate(self._random, self._prefix)
        parsed = token.parse(secret, self._prefix)
        command = CreateKey(
            key_id=parsed.key_id, name=name, organization_id=organization_id, access=tuple(access),
            expires_at=expires_at, secret_hash="", prefix=self._prefix, start=parsed.start(), rate_limit=rate_limit,
            description=description, tags=tuple(tags), allowed_networks=tuple(allowed_networks), credits=credits,
            owner_id=owner_id,
        )
        check_create(command, self._clock())
        check_grant(grantor, command.access, rate_limit, self._tiers)
        command = msgspec.structs.replace(command, secret_hash=await self._hash(secret, metadata))
        state = await self._execute(None, command, None, metadata)
        return IssuedKey(token=secret, state=state)

    async def change_access(
        self,
        key_id: str,
        *,
        access: Sequence[AccessEntry] | None = None,
        name: str | None = None,
        rate_limit: int | None = None,
        expected_version: int | None = None,
        metadata: Metadata | None = None,
        grantor: KeyState | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        allowed_networks: Sequence[str] | None = None,
        credits: Credits | None | msgspec.UnsetType = msgspec.UNSET,
        owner_id: str | None = None,
    ) -> KeyState:
        """Replace the key's access entries, rename it, set its rate limit (0 clears it), description and/or
        tags (None: unchanged); the new access and limit must be ``grantor``'s to grant (see :meth:`create`),
        and a change of either must leave a key ``grantor`` could have granted in full: an organization's
        admin does not re-scope a stronger key while it keeps grants or a limit the admin lacks. Renaming,
        describing and tagging change no grant and need none."""
        command = ChangeAccess(key_id=key_id, access=None if access is None else tuple(access), name=name,
                               rate_limit=rate_limit, description=description,
                               tags=None if tags is None else tuple(tags),
                               allowed_networks=None if allowed_networks is None else tuple(allowed_networks),
                               credits=credits,  # credits: UNSET unchanged, None removed (key.credits_set)
                               owner_id=owner_id)  # None unchanged, "" removed
        check_grant(grantor, command.access, rate_limit, self._tiers)
        state = await self._load_state(key_id)
        if command.access is not None or rate_limit is not None:
            ensure_open(state, key_id)  # a revoked key answers as such, whoever asks
            kept_limit = state.rate_limit if rate_limit is None else (rate_limit or None)
            check_holds(grantor, state.access if command.access is None else command.access, kept_limit,
                        "change the access or rate limit of", self._tiers)
        return await self._execute(state, command, expected_version, metadata)

    async def rotate(
        self,
        key_id: str,
        *,
        grace_seconds: int = 0,
        expected_version: int | None = None,
        metadata: Metadata | None = None,
        grantor: KeyState | None = None,
    ) -> IssuedKey:
        """Give the key a new secret; the old one works for ``grace_seconds`` more. The new secret hands
        over everything the key can do, so ``grantor`` (the acting admin key; None: the operator) must be
        able to grant all of the key's access and rate limit itself (Forbidden, naming what it lacks)."""
        state = await self._load_state(key_id)
        secret = token.generate(self._random, state.prefix, key_id=state.key_id)
        start = token.parse(secret, state.prefix).start()
        check_rotate(RotateKey(key_id=key_id, secret_hash="", start=start, grace_seconds=grace_seconds))
        ensure_open(state, key_id)  # refuse a revoked key before spending argon2 work
        check_holds(grantor, state.access, state.rate_limit, "rotate", self._tiers)  # a change since: a conflict
        command = RotateKey(key_id=key_id, secret_hash=await self._hash(secret, metadata), start=start,
                            grace_seconds=grace_seconds)
        new_state = await self._execute(state, command, expected_version, metadata)
        return IssuedKey(token=secret, state=new_state)

    async def revoke(
        self, key_id: str, *, reason: str = "", expected_version: int | None = None, metadata: Metadata | None = None
    ) -> KeyState:
        """Revoke the key, immediately and irreversibly."""
        command = RevokeKey(key_id=key_id, reason=reason)
        return await self._execute(await self._load_state(key_id), command, expected_version, metadata)

    async def report_leak(
        self, key_id: str, *, source: str, url: str = "", reporter: str = "", previous_secret: bool = False,
        revoke: bool = True, metadata: Metadata | None = None,
    ) -> KeyState:
        """Record that a secret of the key leaked (``key.leak_reported``, never the secret): the old one
        inside its grace period (``previous_secret``: the grace period ends), else the current one, which
        ``revoke`` revokes in the same append. Like every command it returns once every replica holds it."""
        command = ReportLeak(key_id=key_id, source=source, url=url, reporter=reporter,
                             previous_secret=previous_secret, revoke=revoke)
        return await self._execute(await self._load_state(key_id), command, None, metadata)

    async def import_key(self, command: ImportKey, *, metadata: Metadata | None = None,
                         grantor: KeyState | None = None, settle: bool = True) -> list[RecordedEvent]:
        """Create a key brought in from another service with its source's secret hash (no argon2 here: the
        first verify re-hashes it); its ``key.imported`` (and ``key.revoked`` when the source had it disabled)
        in the same append. KeyAlreadyExists when it was imported before (nothing changes). ``settle``: wait
        until every replica holds it (an import of many lines waits once, for the last)."""
        check_grant(grantor, command.create.access, command.create.rate_limit, self._tiers)
        events = decide_import(None, command, self._clock())
        try:
            recorded = await self._store.append(command.create.key_id, 0, events, metadata)
        except ConcurrencyError:
            raise KeyAlreadyExists(f"key {command.create.key_id} already exists") from None
        if self._on_events is not None:
            self._on_events(recorded)
        if settle:
            await self.settle(recorded[-1].global_position)
        return recorded

    @property
    def prefix(self) -> str:
        """The prefix of the tokens this service issues (imported keys are shown with it too)."""
        return self._prefix

    async def settle(self, position: int) -> None:
        """Return once every replica holds the store up to ``position`` (at once without a barrier)."""
        if self._barrier is not None:
            await self._barrier(position)

    async def history(self, key_id: str) -> tuple[KeyState, list[RecordedEvent]]:
        """The key's current state and its full event history; KeyNotFound if it has none."""
        events = await self._store.read_stream(key_id) if token.is_key_id(key_id) else []
        state = fold(recorded.event for recorded in events)
        if state is None:
            raise KeyNotFound(f"key {key_id} not found")
        return state, events

    async def _hash(self, secret: str, metadata: Metadata | None) -> str:
        """argon2 of a new secret, within the process's argon2 bound (Busy when it is full)."""
        if self._queue is None:
            return await self._hasher.hash(secret)
        caller = (metadata.ip or metadata.actor or "") if metadata is not None else ""
        refusal = self._queue.admit(caller)
        if refusal is not None:
            raise Busy(refusal)
        try:
            return await self._hasher.hash(secret)
        finally:
            self._queue.release(caller)

    async def _load_state(self, key_id: str, *, fresh: bool = False) -> KeyState:
        """The key's state to decide on: the live cache's (an API process: under the replica barrier it holds
        every command that has returned), else, or ``fresh``, folded from its stream in the store."""
        if self._current is not None and not fresh and (cached := self._current(key_id)) is not None:
            return cached
        state, _ = await self.history(key_id)
        return state

    async def each(
        self, states: Sequence[KeyState], make: Callable[[KeyState], Command | None], *,
        metadata: Metadata | None = None, dry_run: bool = False,
    ) -> list[KeyState | None | DomainError]:
        """Run ``make(state)``'s command on each key, each its own append checked against the state given (a
        key changed since is read again from the store and its command made anew, once), and report every
        key's outcome in order: its new state, None when ``make`` found nothing to change, or the DomainError
        that refused it; one refusal stops nothing. ``dry_run`` decides each command and appends nothing.
        With a replica barrier, waits once, for the last event of all: every replica holds every change when
        this returns."""
        outcomes: list[KeyState | None | DomainError] = []
        last = 0
        for state in states:
            try:
                outcome, position = await self._each_one(state, make, metadata, dry_run)
            except DomainError as exc:
                outcomes.append(exc)
                continue
            outcomes.append(outcome)
            last = max(last, position)
        if self._barrier is not None and last:
            await self._barrier(last)
        return outcomes

    async def _each_one(self, state: KeyState, make: Callable[[KeyState], Command | None],
                        metadata: Metadata | None, dry_run: bool) -> tuple[KeyState | None, int]:
        for attempt in (1, 2):
            command = make(state)
            if command is None:
                return None, 0
            if dry_run:
                decide(state, command, self._clock())
                return state, 0
            try:
                return await self._append(state, command, state.version, metadata)
            except ConcurrencyError:
                if attempt == 2:
                    raise
                state = await self._load_state(state.key_id, fresh=True)
        raise AssertionError("unreachable")

    async def _execute(
        self, state: KeyState | None, command: Command, expected_version: int | None, metadata: Metadata | None
    ) -> KeyState:
        state, position = await self._append(state, command, expected_version, metadata)
        if self._barrier is not None and position:
            await self._barrier(position)
        return state

    async def _append(
        self, state: KeyState | None, command: Command, expected_version: int | None, metadata: Metadata | None
    ) -> tuple[KeyState, int]:
        """Decide and append ``command``; the new state and the global position of its last event (0: none)."""
        version = state.version if state else 0
        if expected_version is not None and expected_version != version:
            raise ConcurrencyError(f"key {command.key_id} is at version {version}, expected {expected_version}")
        events = decide(state, command, self._clock())
        recorded_events = await self._store.append(command.key_id, version, events, metadata)
        for recorded in recorded_events:
            state = evolve(state, recorded.event)
        if self._on_events is not None:
            self._on_events(recorded_events)
        assert state is not None
        return state, recorded_events[-1].global_position if recorded_events else 0
