"""A finding is one per kind, key and subject: a rule matching again grows it; its id is the same every time
(so a rebuild gives it the id it had); it goes one severity up once its count reaches the threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from keyledger.domain.findings import (
    ACKNOWLEDGED,
    KINDS,
    SEVERITY,
    Match,
    Thresholds,
    acknowledged,
    finding_id,
    recorded,
    severity_of,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEY = "AbCdEfGh1234"


def match(kind: str = "secret_guessing", subject: str = "", at: datetime = T0, n: int = 1) -> Match:
    return Match(kind=kind, subject=subject, at=at, evidence={"n": n})


def test_the_six_kinds_and_their_severities() -> None:
    assert SEVERITY == {"revoked_key_used": "high", "new_network": "medium", "many_networks": "high",
                        "secret_guessing": "medium", "scope_probing": "medium", "volume_spike": "low",
                        "leaked_key": "high"}
    assert KINDS == tuple(SEVERITY)


def test_the_id_is_derived_from_kind_key_and_subject() -> None:
    one = finding_id("new_network", KEY, "198.51.100.0/24")
    assert one == finding_id("new_network", KEY, "198.51.100.0/24")
    assert len({one, finding_id("new_network", KEY, "203.0.113.0/24"), finding_id("many_networks", KEY, ""),
                finding_id("new_network", "ZzZzZzZz9999", "198.51.100.0/24")}) == 4


def test_a_match_makes_a_finding_and_more_matches_grow_it() -> None:
    first = recorded(None, match(n=1), KEY, "org-a", Thresholds())
    assert (first.count, first.first_seen, first.last_seen) == (1, T0, T0)
    assert (first.severity, first.status) == ("medium", "open")
    assert first.id == finding_id("secret_guessing", KEY, "") and first.organization_id == "org-a"
    later = recorded(first, match(at=T0 + timedelta(minutes=3), n=2), KEY, "org-a", Thresholds())
    assert (later.id, later.count, later.first_seen, later.last_seen) == (first.id, 2, T0, T0 + timedelta(minutes=3))
    assert later.evidence == {"n": 2}  # the latest match's
    earlier = recorded(later, match(at=T0 - timedelta(minutes=1)), KEY, "org-a", Thresholds())
    assert (earlier.first_seen, earlier.last_seen) == (T0 - timedelta(minutes=1), T0 + timedelta(minutes=3))


def test_a_finding_goes_one_severity_up_at_the_escalation_count() -> None:
    limits = Thresholds(escalate_after=3)
    assert [severity_of("volume_spike", n, limits) for n in (1, 2, 3, 50)] == ["low", "low", "medium", "medium"]
    assert severity_of("scope_probing", 3, limits) == "high" and severity_of("revoked_key_used", 9, limits) == "high"
    finding = None
    for _ in range(3):
        finding = recorded(finding, match("volume_spike"), KEY, None, limits)
    assert finding is not None and (finding.count, finding.severity) == (3, "medium")


def test_acknowledging_keeps_the_finding_and_growing_keeps_the_acknowledgement() -> None:
    finding = acknowledged(recorded(None, match(), KEY, None, Thresholds()), T0, "key:admin")
    assert (finding.status, finding.acknowledged_at, finding.acknowledged_by) == (ACKNOWLEDGED, T0, "key:admin")
    assert acknowledged(finding, T0 + timedelta(days=1), "key:other") == finding
    grown = recorded(finding, match(at=T0 + timedelta(hours=1)), KEY, None, Thresholds())
    assert (grown.status, grown.count) == (ACKNOWLEDGED, 2)
