"""``sanitized`` remembers the recurring texts it found storable (its fast path on every verify): what it
remembered never lets a text that needs cleaning through, in any field, and the memory stays bounded."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyledger.domain import usage
from keyledger.domain.redaction import redaction_for
from keyledger.domain.usage import FIELD_LIMITS, UsageEvent, clean_text, sanitized

AT = datetime(2030, 1, 1, tzinfo=UTC)
TOKEN = "kl_" + "AbCdEfGhIjKl" + "s3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3" + "AbCdEf"  # token-shaped (50 after the _)
_ids = itertools.count()


def event(**fields: str | None) -> UsageEvent:
    """A VALID verify of a known key (new id each time), with ``fields`` changed."""
    base: dict[str, str | None] = {"action": "verify", "outcome": "VALID", "key_id": "AbCdEfGhIjKl",
                                   "start": "kl_AbCdEfGhIjKls3cr", "scope": "read:data", "granted_by": "global",
                                   "reason": "granted by global", "caller": "in-process:svc"}
    return UsageEvent(id=f"{next(_ids):032x}", at=AT, **{**base, **fields})  # type: ignore[arg-type]


def cleaned_one_by_one(given: UsageEvent) -> UsageEvent:
    """What ``sanitized`` must answer: every field through ``clean_text`` (no memory involved)."""
    redaction = redaction_for("kl")
    return msgspec.structs.replace(given, **{name: clean_text(value, limit, redaction)
                                             for name, limit in FIELD_LIMITS.items()
                                             if (value := getattr(given, name)) is not None})


def test_a_remembered_event_comes_back_as_it_is_and_one_with_a_new_dirty_text_does_not() -> None:
    clean = event(ip="203.0.113.9", user_agent="agent/1")
    assert sanitized(clean) is clean and sanitized(again := event(ip="203.0.113.9", user_agent="agent/1")) is again
    for dirty in (event(ip="203.0.113.9\x00"), event(user_agent=f"agent/1 {TOKEN}"), event(request_id=TOKEN),
                  event(caller_ip="x" * 500), event(website_id="site-\x00a"), event(reason=f"see {TOKEN}")):
        assert sanitized(dirty) == cleaned_one_by_one(dirty) != dirty


def test_a_text_remembered_in_a_long_field_is_still_cut_in_a_shorter_one() -> None:
    text = "w" * 250  # fits granted_by (300), not website_id (200) nor organization_id (200)
    first = event(granted_by=text)
    assert sanitized(first) is first
    for other in (event(granted_by=text, website_id=text), event(granted_by=text, organization_id=text)):
        assert sanitized(other) == cleaned_one_by_one(other) != other


@given(st.lists(st.fixed_dictionaries({}, optional={
    name: st.one_of(st.sampled_from(["verify", "site-a", "x" * 250, TOKEN, "a\x00b", "203.0.113.9"]), st.text())
    for name in ("action", "website_id", "organization_id", "ip", "user_agent", "reason", "caller_ip")}),
    min_size=1, max_size=6))
def test_whatever_came_before_an_event_is_cleaned_as_on_its_own(events: list[dict[str, str]]) -> None:
    for fields in events:
        given_event = event(**fields)
        assert sanitized(given_event) == cleaned_one_by_one(given_event)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage, "_REMEMBER", 8)
    for i in range(100):
        sanitized(event(website_id=f"site-{i}"))
    assert 0 < len(usage._STORABLE[redaction_for("kl").shortest]) <= 8
