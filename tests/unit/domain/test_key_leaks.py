"""A reported leak in the key aggregate: recorded (never the token), revoking the key under policy ``revoke``;
a leak of the old secret inside a rotation's grace period ends that grace period only."""

from datetime import UTC, datetime, timedelta

import pytest

from keyledger.domain.commands import ReportLeak
from keyledger.domain.errors import KeyRevokedError, ValidationError
from keyledger.domain.events import KeyCreated, KeyLeakReported, KeyRevoked, KeyRotated, decode_event, encode_event
from keyledger.domain.key import decide, fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
KEY = "AbCdEfGhIjKl"
CREATED = KeyCreated(key_id=KEY, at=T0, name="ingest", secret_hash="$argon2id$old", prefix="kl",
                     start="kl_AbCdEfGhIjKlxyzw")
ROTATED = KeyRotated(key_id=KEY, at=T0 + timedelta(minutes=30), secret_hash="$argon2id$new",
                     start="kl_AbCdEfGhIjKlnewS",
                     previous_valid_until=NOW + timedelta(hours=1))


def test_a_leak_of_the_current_secret_is_recorded_and_revoked_in_one_append() -> None:
    events = decide(fold([CREATED]), ReportLeak(key_id=KEY, source="github", url="https://github.com/o/r/blob/x",
                                                reporter=" octo "), NOW)
    assert events == [
        KeyLeakReported(key_id=KEY, at=NOW, source="github", url="https://github.com/o/r/blob/x", reporter="octo",
                        reported_at=NOW),
        KeyRevoked(key_id=KEY, at=NOW, reason="leaked: reported by github at https://github.com/o/r/blob/x"),
    ]
    state = fold([CREATED, *events])
    assert state is not None and state.status(NOW) == "revoked" and state.version == 3


def test_policy_notify_records_the_leak_and_keeps_the_key() -> None:
    events = decide(fold([CREATED]), ReportLeak(key_id=KEY, source="public", revoke=False), NOW)
    assert events == [KeyLeakReported(key_id=KEY, at=NOW, source="public", reported_at=NOW)]
    state = fold([CREATED, *events])
    assert state is not None and state.status(NOW) == "active" and state.secret_hash == "$argon2id$old"


def test_a_leak_of_the_old_secret_ends_the_grace_period_and_keeps_the_current_one() -> None:
    before = fold([CREATED, ROTATED])
    assert before is not None and before.previous_secret_valid(NOW)
    events = decide(before, ReportLeak(key_id=KEY, source="scanner", previous_secret=True), NOW)
    assert events == [KeyLeakReported(key_id=KEY, at=NOW, source="scanner", reported_at=NOW, ended_grace=True)]
    after = fold(events, before)
    assert after is not None and after.status(NOW) == "active" and after.secret_hash == "$argon2id$new"
    assert after.previous_hash is None and not after.previous_secret_valid(NOW)


def test_an_old_secret_past_its_grace_is_no_leak_to_record() -> None:
    with pytest.raises(ValidationError, match="grace"):
        decide(fold([CREATED, ROTATED]), ReportLeak(key_id=KEY, source="public", previous_secret=True),
               NOW + timedelta(hours=2))


def test_a_revoked_key_records_no_more_leaks() -> None:
    with pytest.raises(KeyRevokedError):
        decide(fold([CREATED, KeyRevoked(key_id=KEY, at=T0)]), ReportLeak(key_id=KEY, source="public"), NOW)


@pytest.mark.parametrize("command, message", [
    (ReportLeak(key_id=KEY, source="pastebin"), "source must be one of github, public, scanner"),
    (ReportLeak(key_id=KEY, source="public", url="x" * 401), "url longer than"),
    (ReportLeak(key_id=KEY, source="public", reporter="a\nb"), "control characters"),
])
def test_bad_reports_are_refused(command: ReportLeak, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        decide(fold([CREATED]), command, NOW)


def test_a_token_quoted_in_the_url_or_reporter_is_cut_to_its_start() -> None:
    body = "AbCdEfGhIjKl" + "s" * 32 + "000000"
    events = decide(fold([CREATED]), ReportLeak(key_id=KEY, source="public", url=f"https://paste/kl_{body}",
                                                reporter=f"me kl_{body}", revoke=False), NOW)
    stored = encode_event(events[0]).decode()
    assert body not in stored and "kl_AbCdEfGhIjKlssss" in stored
    assert decode_event(stored) == events[0]
