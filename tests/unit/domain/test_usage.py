"""Usage events are made storable where they are made: no control characters, bounded lengths."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from keyledger.domain.usage import FIELD_LIMITS, REPLACEMENT, UsageEvent, attempted_start, clean_text, sanitized

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_nul_or_a_lone_surrogate_is_replaced_and_everything_else_kept() -> None:
    event = UsageEvent(id="e1", at=AT, action="GET /v1/keys/a\x00b", outcome="VALID", user_agent="curl\ud800/8 é",
                       ip="203.0.113.5\r\n")
    clean = sanitized(event)
    assert clean.action == f"GET /v1/keys/a{REPLACEMENT}b" and clean.user_agent == f"curl{REPLACEMENT}/8 é"
    assert clean.ip == f"203.0.113.5{REPLACEMENT}{REPLACEMENT}"
    assert (clean.id, clean.outcome, clean.at) == ("e1", "VALID", AT)


def test_a_clean_event_is_returned_as_it_is() -> None:
    event = UsageEvent(id="e1", at=AT, action="verify", outcome="VALID", user_agent="Mozilla/5.0 (X11; Linux)")
    assert sanitized(event) is event


def test_every_text_field_is_capped() -> None:
    long = "x" * 10_000
    event = UsageEvent(id=long, at=AT, action=long, outcome=long, key_id=long, start=long, organization_id=long,
                       scope=long, granted_by=long, reason=long, website_id=long, data=long, ip=long,
                       user_agent=long, request_id=long, caller=long, caller_ip=long)
    clean = sanitized(event)
    assert all(len(getattr(clean, name)) == limit for name, limit in FIELD_LIMITS.items())
    assert set(FIELD_LIMITS) == {name for name in UsageEvent.__struct_fields__ if name not in ("at", "credits_spent")}


@given(st.text(max_size=400))
def test_cleaned_text_never_holds_what_postgres_refuses(value: str) -> None:
    cleaned = clean_text(value, 300)
    assert len(cleaned) <= 300 and "\x00" not in cleaned
    cleaned.encode("utf-8")  # no lone surrogates left


def test_of_a_token_that_does_not_parse_at_most_its_prefix_is_kept() -> None:
    secretish = "kl_" + "A" * 12 + "s3cr3tS3cr3t" * 3  # e.g. a real token with one character mistyped
    assert attempted_start(secretish, 19, well_formed=False) == "kl_"
    assert attempted_start("no-underscore-at-all", 19, well_formed=False) == ""
    assert attempted_start("averyveryverylongprefix_rest", 19, well_formed=False) == "averyver_"
    assert attempted_start(secretish, 19, well_formed=True) == secretish[:19]  # the public start of a token
