"""The key aggregate: given these events, when this command, then these events (or an error)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.commands import MAX_GRACE_SECONDS, ChangeAccess, Command, CreateKey, RevokeKey, RotateKey
from keyledger.domain.errors import DomainError, KeyAlreadyExists, KeyNotFound, KeyRevokedError, ValidationError
from keyledger.domain.events import AnyEvent, KeyAccessChanged, KeyCreated, KeyRevoked, KeyRotated
from keyledger.domain.key import decide, evolve, fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
KEY = "AbCdEfGhIjKl"
READ = AccessEntry(resource="website", id="site-a", scopes=("read:data",))
ADMIN = AccessEntry(resource="global", scopes=("admin:apikeys",))
CREATED = KeyCreated(key_id=KEY, at=T0, name="ingest", organization_id="org-1", access=(READ,),
                     secret_hash="$argon2id$old", prefix="kl", start="kl_AbCdEfGhIjKlxyzw")


def create(**overrides: object) -> CreateKey:
    fields: dict[str, object] = dict(key_id=KEY, name="ingest", organization_id="org-1", access=(READ,),
                                     secret_hash="$argon2id$old", prefix="kl", start="kl_AbCdEfGhIjKlxyzw")
    fields.update(overrides)
    return CreateKey(**fields)  # type: ignore[arg-type]


def when(given: list[AnyEvent], command: Command) -> list[AnyEvent]:
    return decide(fold(given), command, NOW)


def test_create_on_empty_stream() -> None:
    assert when([], create(name="  ingest  ")) == [
        KeyCreated(key_id=KEY, at=NOW, name="ingest", organization_id="org-1", access=(READ,),
                   secret_hash="$argon2id$old", prefix="kl", start="kl_AbCdEfGhIjKlxyzw")
    ]


def test_create_twice_is_refused() -> None:
    with pytest.raises(KeyAlreadyExists):
        when([CREATED], create())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"name": "   "}, "name must not be empty"),
        ({"name": "x" * 201}, "name longer than"),
        ({"name": "bad\nname"}, "control characters"),
        ({"access": (AccessEntry(resource="global", scopes=("read:all",)),)}, "unknown scope"),
        ({"access": (AccessEntry(resource="galaxy", scopes=("read:data",)),)}, "unknown resource type"),
        ({"access": tuple(AccessEntry(resource="website", id=f"w{i}", scopes=("read:data",)) for i in range(101))},
         "too many access entries"),
        ({"expires_at": NOW - timedelta(seconds=1)}, "in the future"),
        ({"expires_at": datetime(2030, 1, 1)}, "time zone"),
        ({"expires_at": datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=14)))}, "out of range"),
    ],
)
def test_invalid_create_is_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        when([], create(**overrides))


def test_change_access_replaces_entries_and_renames() -> None:
    events = when([CREATED], ChangeAccess(key_id=KEY, access=(ADMIN,), name="admin"))
    assert events == [KeyAccessChanged(key_id=KEY, at=NOW, access=(ADMIN,), name="admin")]
    state = fold([CREATED, *events])
    assert state is not None and state.access == (ADMIN,) and state.name == "admin" and state.version == 2


def test_change_with_nothing_to_change_is_refused() -> None:
    with pytest.raises(ValidationError, match="nothing to change"):
        when([CREATED], ChangeAccess(key_id=KEY))


def test_rename_only_keeps_access() -> None:
    state = fold([CREATED, *when([CREATED], ChangeAccess(key_id=KEY, name="renamed"))])
    assert state is not None and state.access == (READ,) and state.name == "renamed"


def test_rotate_with_grace_keeps_old_hash_until_the_end_of_grace() -> None:
    events = when([CREATED], RotateKey(key_id=KEY, secret_hash="$new", start="kl_new", grace_seconds=3600))
    assert events == [KeyRotated(key_id=KEY, at=NOW, secret_hash="$new", start="kl_new",
                                 previous_valid_until=NOW + timedelta(hours=1))]
    state = fold([CREATED, *events])
    assert state is not None
    assert (state.secret_hash, state.previous_hash, state.start) == ("$new", "$argon2id$old", "kl_new")
    assert state.previous_secret_valid(NOW + timedelta(minutes=59))
    assert not state.previous_secret_valid(NOW + timedelta(hours=1))


def test_rotate_without_grace_drops_the_old_secret_at_once() -> None:
    state = fold([CREATED, *when([CREATED], RotateKey(key_id=KEY, secret_hash="$new", start="kl_new"))])
    assert state is not None and state.previous_hash is None and not state.previous_secret_valid(NOW)


@pytest.mark.parametrize("grace", [-1, MAX_GRACE_SECONDS + 1])
def test_grace_out_of_range_is_refused(grace: int) -> None:
    with pytest.raises(ValidationError, match="grace period"):
        when([CREATED], RotateKey(key_id=KEY, secret_hash="$n", start="kl_n", grace_seconds=grace))


def test_grace_of_seven_days_is_allowed() -> None:
    (event,) = when([CREATED], RotateKey(key_id=KEY, secret_hash="$n", start="n", grace_seconds=MAX_GRACE_SECONDS))
    assert isinstance(event, KeyRotated) and event.previous_valid_until == NOW + timedelta(days=7)


def test_revoke_then_status() -> None:
    events = when([CREATED], RevokeKey(key_id=KEY, reason=" leaked "))
    assert events == [KeyRevoked(key_id=KEY, at=NOW, reason="leaked")]
    state = fold([CREATED, *events])
    assert state is not None and state.status(NOW) == "revoked" and state.revoke_reason == "leaked"


@pytest.mark.parametrize(
    "command",
    [
        RevokeKey(key_id=KEY),
        ChangeAccess(key_id=KEY, name="again"),
        RotateKey(key_id=KEY, secret_hash="$n", start="n"),
    ],
)
def test_every_command_on_a_revoked_key_is_refused(command: Command) -> None:
    revoked = KeyRevoked(key_id=KEY, at=T0 + timedelta(minutes=1))
    with pytest.raises(KeyRevokedError, match="cannot be undone"):
        when([CREATED, revoked], command)


@pytest.mark.parametrize("command", [RevokeKey(key_id=KEY), ChangeAccess(key_id=KEY, name="x")])
def test_commands_on_a_missing_key_are_refused(command: Command) -> None:
    with pytest.raises(KeyNotFound):
        when([], command)


def test_expiry_is_decided_by_the_clock() -> None:
    expiring = KeyCreated(key_id=KEY, at=T0, name="n", access=(READ,), expires_at=NOW, secret_hash="h",
                          prefix="kl", start="s")
    state = evolve(None, expiring)
    assert state.status(NOW - timedelta(microseconds=1)) == "active"
    assert state.status(NOW) == "expired"


def test_errors_carry_codes() -> None:
    assert {ValidationError.code, KeyNotFound.code, KeyRevokedError.code} == {
        "VALIDATION_ERROR", "NOT_FOUND", "CONFLICT"}
    assert issubclass(KeyRevokedError, DomainError)


def test_event_before_creation_is_rejected() -> None:
    with pytest.raises(ValueError, match="before key.created"):
        evolve(None, KeyRevoked(key_id=KEY, at=T0))


def test_states_and_events_are_left_out_of_cyclic_gc() -> None:
    """A process holds every key's state: none of it may make the cyclic GC rescan it (no cycles possible)."""
    import gc

    from keyledger.domain.key import evolve
    from tests.support.factories import created

    event = created("gc-check")
    state = evolve(None, event)
    assert not gc.is_tracked(event) and not gc.is_tracked(state) and not gc.is_tracked(state.access[0])


def test_description_and_tags_are_kept_on_create_and_replaced_on_change() -> None:
    created = when([], create(description="  ingest for the web team\nsecond line ", tags=("Team:Web", "ci", "ci")))
    assert created[0].description == "ingest for the web team\nsecond line"  # type: ignore[union-attr]
    assert created[0].tags == ("team:web", "ci")  # type: ignore[union-attr]
    changed = decide(fold(created), ChangeAccess(key_id=KEY, description="now for ci", tags=()), NOW)
    state = fold([*created, *changed])
    assert state is not None and state.description == "now for ci" and state.tags == ()
    assert state.name == "ingest" and state.access == (READ,)
    renamed = fold([*created, *changed, *decide(state, ChangeAccess(key_id=KEY, name="renamed"), NOW)])
    assert renamed is not None and renamed.description == "now for ci" and renamed.tags == ()


def test_a_key_created_before_descriptions_has_none() -> None:
    state = fold([CREATED])
    assert state is not None and state.description == "" and state.tags == ()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"description": "x" * 1001}, "description longer than"),
        ({"description": "bell\x07"}, "control characters"),
        ({"tags": ("ok", "has space")}, "may use only"),
        ({"tags": ("",)}, "1 to 50"),
        ({"tags": ("x" * 51,)}, "1 to 50"),
        ({"tags": tuple(f"t{i}" for i in range(21))}, "too many tags"),
    ],
)
def test_invalid_description_or_tags_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        when([], create(**overrides))
    with pytest.raises(ValidationError, match=message):
        when([CREATED], ChangeAccess(key_id=KEY, **overrides))  # type: ignore[arg-type]
