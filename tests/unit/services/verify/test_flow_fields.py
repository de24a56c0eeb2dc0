"""The verify flow builds its usage event and the answer by position (the hot path): each value must land in
the field of its name. Every value here is distinct, so a field order that changed under the flow fails."""

from __future__ import annotations

from datetime import UTC, datetime

from keyledger.domain.access import AccessEntry
from keyledger.domain.key import KeyState
from keyledger.services.verify.answer import answer
from keyledger.services.verify.credits import CreditDecision
from keyledger.services.verify.flow import VerifyFlow
from keyledger.services.verify.throttles import FailureThrottle, RateDecision
from keyledger.services.verify.verifier import Verdict

AT = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
GRANT = AccessEntry(resource="website", id="site-7", scopes=("read:data",))
KEY = KeyState(key_id="abcdefghijkl", version=3, name="svc", organization_id="org-9", access=(GRANT,),
               expires_at=datetime(2031, 1, 1, tzinfo=UTC), secret_hash="h", prefix="kl",
               start="kl_abcdefghijklWxyz", created_at=AT, updated_at=AT)
VERDICT = Verdict(valid=False, code="FORBIDDEN", reason="not granted on site-8", key=KEY, granted_by=GRANT)


def flow() -> VerifyFlow:
    """A flow whose collaborators the field mapping never calls."""
    return VerifyFlow(verifier=None, limiter=None, last_used=None, usage=None,  # type: ignore[arg-type]
                      clock=lambda: AT, rate_tiers={}, forwarded_failures=FailureThrottle(10))


def test_each_usage_event_value_lands_in_its_own_field() -> None:
    event = flow().usage_event("verify", AT, VERDICT, "kl_abcdefghijklWxyz" + "s" * 34, "read:data", "site-8",
                               "error_data", "203.0.113.9", "agent/1", None, "credential:c1", "198.51.100.2", None,
                               "req-42", 7)
    assert event.credits_spent == 7
    assert len(event.id) == 32 and event.id != "req-42"
    assert (event.at, event.action, event.outcome) == (AT, "verify", "FORBIDDEN")
    assert (event.key_id, event.start, event.organization_id) == ("abcdefghijkl", "kl_abcdefghijklWxyz", "org-9")
    assert (event.scope, event.granted_by, event.reason) == ("read:data", "website:site-7", "not granted on site-8")
    assert (event.website_id, event.data, event.ip, event.user_agent) == ("site-8", "error_data", "203.0.113.9",
                                                                          "agent/1")
    assert (event.request_id, event.caller, event.caller_ip) == ("req-42", "credential:c1", "198.51.100.2")


def test_an_event_without_a_verdict_names_what_was_missing() -> None:
    event = flow().usage_event("GET /v1/keys", None, None, None, None, outcome="AUTH_REQUIRED",
                               reason="no key presented here")
    assert (event.at, event.action, event.outcome, event.reason) == (AT, "GET /v1/keys", "AUTH_REQUIRED",
                                                                      "no key presented here")
    assert (event.key_id, event.start, event.organization_id, event.granted_by) == (None, None, None, None)


def test_each_answer_value_lands_in_its_own_field() -> None:
    given = answer(VERDICT, RateDecision(allowed=True, limit=100, remaining=42, reset=1_900_000_000),
                   CreditDecision(False, 0, 3))
    assert given.credits is not None and given.credits.remaining == 3
    assert (given.valid, given.code, given.reason) == (False, "FORBIDDEN", "not granted on site-8")
    assert (given.key_id, given.organization_id, given.scopes) == ("abcdefghijkl", "org-9", ["read:data"])
    assert given.granted_by is not None and (given.granted_by.resource, given.granted_by.id) == ("website", "site-7")
    assert given.expires_at == datetime(2031, 1, 1, tzinfo=UTC)
    assert given.ratelimit is not None
    assert (given.ratelimit.limit, given.ratelimit.remaining, given.ratelimit.reset) == (100, 42, 1_900_000_000)
