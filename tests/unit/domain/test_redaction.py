"""No token's secret survives redaction, wherever it stands in a text; ordinary text is left alone."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyledger.domain import token
from keyledger.domain.redaction import ISSUED_PREFIXES, holds_token_shape, redact, redaction_for
from keyledger.domain.usage import FIELD_LIMITS, UsageEvent, clean_text, sanitized

AT = datetime(2026, 1, 1, tzinfo=UTC)


def new_token(prefix: str = token.DEFAULT_PREFIX, seed: int = 1) -> str:
    """A well-formed token made for this test (never one of a deployment)."""
    return token.generate(random.Random(seed).randbytes, prefix)


def start_of(secret: str) -> str:
    return token.parse(secret, secret.partition("_")[0]).start()


def hidden_part(secret: str) -> str:
    """What a start does not show: the secret's other 28 characters and the checksum."""
    return secret[len(start_of(secret)):]


KEY = new_token()
CREDENTIAL = new_token(token.CREDENTIAL_PREFIX, seed=2)


@pytest.mark.parametrize("template", [
    "{t}", "Bearer {t}", "/api/keys/{t}/stats", "/api/x;token={t}", "/api/x;token={t};v=1", "GET /a/{t}?q=1",
    "forward-auth GET /api/keys/{t}", "Mozilla/5.0 ({t}) Gecko", '{{"key": "{t}"}}', "site_{t}", "site-{t}",
    "x{t}", "{t}trailing", "'{t}'", "{t}_{t}", "key={t}&other={t}",
])
@pytest.mark.parametrize("secret", [KEY, CREDENTIAL], ids=["key", "credential"])
def test_a_token_anywhere_in_a_text_is_replaced_by_its_start(template: str, secret: str) -> None:
    text = template.format(t=secret)
    cut = redact(text)
    assert hidden_part(secret) not in cut
    assert start_of(secret) in cut
    assert cut == template.format(t=start_of(secret)).replace(f"{start_of(secret)}trailing", start_of(secret))


def test_several_tokens_each_keep_their_own_start() -> None:
    keys = [new_token(seed=seed) for seed in range(5)]
    text = " ; ".join([*keys, CREDENTIAL])
    assert redact(text) == " ; ".join(start_of(secret) for secret in [*keys, CREDENTIAL])


def test_a_percent_encoded_separator_is_seen_through() -> None:
    for separator in ("%5F", "%5f"):
        text = f"/api/keys/{KEY.replace('_', separator)}/stats"
        assert redact(text) == f"/api/keys/{start_of(KEY)}/stats"


def test_a_token_cut_short_under_an_issued_prefix_keeps_only_its_start() -> None:
    for length in range(len(start_of(KEY)) + 1, len(KEY)):
        assert redact(f"ua {KEY[:length]}") == f"ua {start_of(KEY)}"
        assert redact(f"ua x{KEY[:length]}") == f"ua x{start_of(KEY)}"  # glued to what stands before it
    assert redact(f"ua {start_of(KEY)}") == f"ua {start_of(KEY)}"


def test_the_configured_prefix_is_redacted_full_or_cut_short() -> None:
    custom = new_token("acme", seed=3)
    acme = redaction_for("acme")
    assert set(acme.prefixes) == {"acme", *ISSUED_PREFIXES}
    assert redact(f"/v/{custom}", acme) == f"/v/{start_of(custom)}"
    assert redact(f"/v/{custom[:30]}", acme) == f"/v/{start_of(custom)}"
    assert redact(f"/v/{KEY} {CREDENTIAL}", acme) == f"/v/{start_of(KEY)} {start_of(CREDENTIAL)}"
    # any prefix: a full token is redacted even where its prefix is not the deployment's
    assert redact(f"/v/{custom}") == f"/v/{start_of(custom)}"


@pytest.mark.parametrize("text", [
    "", "verify", "GET /v1/keys/{key_id}", "forward-auth GET /api/user_stats/summary", "read:data granted globally",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "usage_events_20261201",
    "org_2NfXbT7Lk9QzPcR1mW3yV8sA4dE", "org_01EHZNVPK3SFK441A1RGBFSHRT", "acct_1032D82eZvKYlo2C",
    "5f0c6a1e3b2d4c8e0000000000000001", "snake_case_identifier_with_many_parts", "KL_12871971bcABCDEFGHIJKLMN",
    "100% of 20_000_000 requests", "website:site-a", "credential:euZFJricz3Xx", "a%20b%5Fc",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text
    assert redact(text, redaction_for("acme")) == text


def test_starts_are_left_alone_under_any_prefix() -> None:
    for prefix in ("k", "kl", "klvc", "acme", "a" * 16):
        start = start_of(new_token(prefix))
        assert redact(f"key {start} used", redaction_for(prefix)) == f"key {start} used"
        assert not holds_token_shape(f"key {start} used")  # so the fast path passes a start untouched
    assert len(start_of(KEY)) < redaction_for().shortest  # a default start is not even searched


@given(before=st.text(max_size=40), after=st.text(max_size=40), seed=st.integers(0, 2**32),
       prefix=st.sampled_from(["kl", "klvc", "acme", "z", "p" * 16]))
def test_no_secret_survives_whatever_surrounds_it(before: str, after: str, seed: int, prefix: str) -> None:
    secret = new_token(prefix, seed)
    assert hidden_part(secret) not in redact(before + secret + after, redaction_for(prefix))
    assert hidden_part(secret) not in redact(before + secret + after)  # a full token under any prefix


def test_every_text_field_of_a_usage_event_is_redacted() -> None:
    fields: dict[str, Any] = {name: f"{name[:3]}={KEY}" for name in FIELD_LIMITS}
    clean = sanitized(UsageEvent(at=AT, **fields))
    for name in FIELD_LIMITS:
        assert getattr(clean, name) == f"{name[:3]}={start_of(KEY)}", name


def test_a_token_cut_by_a_field_limit_loses_its_secret_too() -> None:
    for room in range(0, len(KEY) + 2):
        limit = FIELD_LIMITS["user_agent"]
        cleaned = clean_text("u" * (limit - room) + " " + KEY, limit)
        assert len(cleaned) <= limit
        assert all(KEY[:n] not in cleaned for n in range(len(start_of(KEY)) + 1, len(KEY) + 1))


def test_an_event_without_a_secret_is_returned_as_it_is() -> None:
    event = UsageEvent(id="5f0c6a1e3b2d4c8e0000000000000001", at=AT, action="forward-auth GET /api/user_stats",
                       outcome="VALID", key_id=KEY[3:15], start=start_of(KEY), reason="read:data granted globally",
                       organization_id="org_2NfXbT7Lk9QzPcR1mW3yV8sA4dE", user_agent="curl/8.5.0 (100%)")
    assert sanitized(event) is event
    assert sanitized(event, redaction_for("acme")) is event


def test_a_custom_prefix_is_redacted_in_events_built_for_it() -> None:
    custom = new_token("acme", seed=4)
    event = UsageEvent(id="e1", at=AT, action="verify", outcome="MALFORMED", website_id=custom[:40])
    assert sanitized(event, redaction_for("acme")).website_id == start_of(custom)


@given(st.text(alphabet=st.sampled_from("kl_vc%5Ff-/;= aZ09é"), max_size=80), st.sampled_from(["kl", "acme", "z"]))
def test_the_cheap_test_passes_every_text_the_pattern_would_change(text: str, prefix: str) -> None:
    assert holds_token_shape(text) or redaction_for(prefix).pattern.search(text) is None
