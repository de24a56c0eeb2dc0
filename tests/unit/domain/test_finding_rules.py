"""The watch's rules, one by one, at their boundaries: given a key's usage events, which findings they raise.
Times are the events' own, so every boundary is exact (a window of 5 minutes holds an event 5 minutes old,
not one 5 minutes and a second old)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from keyledger.domain.finding_rules import Profile, guessed_key_id, network_of, observe
from keyledger.domain.findings import Match, Thresholds
from keyledger.domain.usage import UsageEvent

T0 = datetime(2030, 1, 1, tzinfo=UTC)
KEY = "AbCdEfGh1234"
LIMITS = Thresholds()
_ids = itertools.count()


def event(at: datetime, outcome: str = "VALID", ip: str | None = "198.51.100.7", **fields: Any) -> UsageEvent:
    """A verify of KEY (its secret accepted) at ``at``."""
    return UsageEvent(**{"id": f"{next(_ids):032x}", "at": at, "action": "verify", "outcome": outcome,
                         "key_id": KEY, "start": f"kl_{KEY}wxyz", "organization_id": "org-a", "scope": "read:data",
                         "ip": ip, **fields})


def wrong_secret(at: datetime, ip: str = "203.0.113.9") -> UsageEvent:
    """A verify naming KEY's id with a wrong secret: NOT_FOUND, no key."""
    return UsageEvent(id=f"{next(_ids):032x}", at=at, action="verify", outcome="NOT_FOUND", start=f"kl_{KEY}Qz1x",
                      reason="unknown key", ip=ip)


def run(events: list[UsageEvent], profile: Profile | None = None, limits: Thresholds = LIMITS) -> list[Match]:
    profile = Profile() if profile is None else profile
    return [match for e in events for match in observe(profile, e, limits)]


def kinds(matches: list[Match]) -> list[str]:
    return [m.kind for m in matches]


def every(seconds: float, count: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(seconds=seconds * i) for i in range(count)]


# ---- networks ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("address", "network"), [
    ("198.51.100.7", "198.51.100.0/24"), ("198.51.100.255", "198.51.100.0/24"),
    ("2001:db8:1234:5678::1", "2001:db8:1234::/48"), ("[2001:db8:1234:ffff::9]", "2001:db8:1234::/48"),
    ("::ffff:198.51.100.7", "198.51.100.0/24"), (" 10.1.2.3 ", "10.1.2.0/24"),
    ("not an address", None), ("", None), (None, None), ("198.51.100.7:8080", None),
])
def test_the_network_is_the_24_or_the_48(address: str | None, network: str | None) -> None:
    assert network_of(address) == network


def test_a_wrong_secret_names_its_key_only_through_a_well_formed_start() -> None:
    assert guessed_key_id(wrong_secret(T0)) == KEY
    assert guessed_key_id(msgspec.structs.replace(wrong_secret(T0), start="kl_")) is None  # malformed: no id
    assert guessed_key_id(msgspec.structs.replace(wrong_secret(T0), start=f"kl_{KEY}")) is None  # no secret part
    assert guessed_key_id(event(T0)) is None  # a use, not a guess
    assert guessed_key_id(msgspec.structs.replace(wrong_secret(T0), outcome="MALFORMED")) is None


# ---- revoked_key_used ----------------------------------------------------------------------------------------

def test_a_revoked_or_expired_key_used_with_its_secret_is_high() -> None:
    matches = run([event(T0), event(T0, "REVOKED"), event(T0, "EXPIRED"), event(T0, "FORBIDDEN")])
    assert [(m.kind, m.subject) for m in matches] == [("revoked_key_used", "revoked"), ("revoked_key_used", "expired")]
    assert matches[0].evidence["ip"] == "198.51.100.7" and matches[0].evidence["network"] == "198.51.100.0/24"


# ---- secret_guessing -----------------------------------------------------------------------------------------

def test_9_wrong_secrets_in_5_minutes_are_no_finding_and_10_are() -> None:
    profile = Profile()
    assert run([wrong_secret(at) for at in every(30, 9)], profile) == []
    (match,) = run([wrong_secret(T0 + timedelta(seconds=270))], profile)
    assert (match.kind, match.subject, match.evidence["wrong_secrets"]) == ("secret_guessing", "", 10)
    assert kinds(run([wrong_secret(T0 + timedelta(seconds=280))], profile)) == ["secret_guessing"]  # it grows


@pytest.mark.parametrize(("span", "found"), [(timedelta(minutes=5), True), (timedelta(minutes=5, seconds=1), False)])
def test_ten_wrong_secrets_count_within_five_minutes_exactly(span: timedelta, found: bool) -> None:
    times = [T0 + span * i / 9 for i in range(10)]
    assert bool(run([wrong_secret(at) for at in times])) is found


def test_wrong_secrets_arriving_out_of_order_count_by_their_own_times() -> None:
    times = every(20, 10)
    assert kinds(run([wrong_secret(at) for at in [*times[5:], *times[:5]]])) == ["secret_guessing"]


# ---- scope_probing -------------------------------------------------------------------------------------------

def forbidden(at: datetime, scope: str, website: str | None = None) -> UsageEvent:
    return event(at, "FORBIDDEN", scope=scope, website_id=website)


def test_ten_refusals_across_three_scopes_are_probing() -> None:
    scopes = ["read:data", "write:data", "read:export"]
    probes = [forbidden(at, scopes[i % 3]) for i, at in enumerate(every(20, 10))]
    (match,) = run(probes)
    assert match.kind == "scope_probing" and match.evidence["scopes"] == sorted(scopes)
    assert match.evidence["forbidden"] == 10


def test_ten_refusals_across_three_websites_are_probing_too() -> None:
    probes = [forbidden(at, "read:data", f"site-{i % 3}") for i, at in enumerate(every(20, 10))]
    assert kinds(run(probes)) == ["scope_probing"]


def test_nine_refusals_or_two_scopes_and_two_resources_are_not() -> None:
    scopes = ["read:data", "write:data", "read:export"]
    assert run([forbidden(at, scopes[i % 3]) for i, at in enumerate(every(20, 9))]) == []
    two_by_two = [forbidden(at, ["read:data", "write:data"][i % 2], ["a", "b"][i // 5]) for i, at in
                  enumerate(every(20, 10))]
    assert run(two_by_two) == []
    slow = [forbidden(at, scopes[i % 3]) for i, at in enumerate(every(40, 10))]  # 6 minutes
    assert run(slow) == []


# ---- many_networks -------------------------------------------------------------------------------------------

def test_19_networks_in_10_minutes_are_no_finding_and_20_are() -> None:
    profile = Profile()
    uses = [event(at, ip=f"198.51.{i}.7") for i, at in enumerate(every(30, 19))]
    assert run(uses, profile) == []
    (match,) = run([event(T0 + timedelta(minutes=10), ip="203.0.113.1")], profile)
    assert match.kind == "many_networks" and match.evidence["distinct_networks"] == 20
    assert "203.0.113.0/24" in match.evidence["networks"]


def test_addresses_of_one_network_count_once() -> None:
    v4 = [event(at, ip=f"198.51.100.{i}") for i, at in enumerate(every(10, 25))]
    v6 = [event(at, ip=f"2001:db8:77:{i:x}::1") for i, at in enumerate(every(10, 25))]  # one /48
    assert run(v4) == [] and run(v6) == []


def test_20_ipv6_48s_are_many_networks() -> None:
    uses = [event(at, ip=f"2001:db8:{i:x}::1") for i, at in enumerate(every(10, 20))]
    assert kinds(run(uses)) == ["many_networks"]


def test_networks_older_than_the_window_do_not_count() -> None:
    uses = [event(at, ip=f"198.51.{i}.7") for i, at in enumerate(every(600 / 19 + 1, 20))]  # 10 min + 19 s
    assert run(uses) == []


# ---- new_network ---------------------------------------------------------------------------------------------

def test_a_new_network_after_20_uses_is_a_finding_after_19_not() -> None:
    nineteen, twenty = Profile(), Profile()
    run([event(at) for at in every(60, 19)], nineteen)
    run([event(at) for at in every(60, 20)], twenty)
    later = T0 + timedelta(hours=1)
    assert run([event(later, ip="203.0.113.5")], nineteen) == []
    (match,) = run([event(later, ip="203.0.113.5")], twenty)
    assert (match.kind, match.subject, match.evidence["uses_before"]) == ("new_network", "203.0.113.0/24", 20)
    assert run([event(later, ip="203.0.113.99")], twenty) == []  # that network is known now


def test_a_new_ipv6_network_is_a_new_48() -> None:
    profile = Profile()
    run([event(at, ip="2001:db8:1::1") for at in every(60, 20)], profile)
    assert run([event(T0 + timedelta(hours=1), ip="2001:db8:1:ffff::9")], profile) == []
    moved = run([event(T0 + timedelta(hours=1), ip="2001:db8:2::1")], profile)
    assert [m.subject for m in moved] == ["2001:db8:2::/48"]


@pytest.mark.parametrize(("away", "found"), [(timedelta(days=30), False), (timedelta(days=30, seconds=1), True)])
def test_a_network_unseen_for_30_days_is_new_again(away: timedelta, found: bool) -> None:
    profile = Profile()
    times = every(60, 20)
    run([event(at, ip="198.51.100.1") for at in times], profile)
    back = times[-1] + away
    matches = run([event(back - timedelta(seconds=1), ip="203.0.113.1"), event(back, ip="198.51.100.1")], profile)
    assert [m.subject for m in matches if m.kind == "new_network"] == \
        ["203.0.113.0/24", *(["198.51.100.0/24"] if found else [])]


# ---- volume_spike --------------------------------------------------------------------------------------------

def steady(profile: Profile, per_hour: int, hours: int) -> datetime:
    """``per_hour`` uses in each of ``hours`` hours from T0; the start of the hour after."""
    for hour in range(hours):
        run([event(at) for at in every(3600 / per_hour, per_hour, T0 + timedelta(hours=hour))], profile)
    return T0 + timedelta(hours=hours)


def test_ten_times_the_hourly_median_is_a_spike_once_an_hour() -> None:
    profile = Profile()
    spike = steady(profile, 3, 7 * 24)
    uses = run([event(at) for at in every(60, 29, spike)], profile)
    assert uses == []  # 29 < 10 x 3
    (match,) = run([event(spike + timedelta(minutes=30))], profile)
    assert match.kind == "volume_spike" and match.evidence["uses"] == 30 and match.evidence["hourly_median"] == 3
    assert run([event(spike + timedelta(minutes=31 + i)) for i in range(20)], profile) == []  # once that hour


def test_no_spike_without_24_hours_of_history() -> None:
    young, old = Profile(), Profile()
    run([event(T0)], young)
    run([event(T0)], old)
    assert run([event(at) for at in every(10, 10, T0 + timedelta(hours=23, minutes=58))], young) == []
    assert kinds(run([event(at) for at in every(10, 10, T0 + timedelta(hours=24))], old)) == ["volume_spike"]


def test_hours_without_uses_count_in_the_median() -> None:
    profile = Profile()
    run([event(at) for at in every(1, 40, T0)], profile)  # 40 in the first hour, none in the 30 after
    later = T0 + timedelta(hours=31)
    assert kinds(run([event(at) for at in every(10, 10, later)], profile)) == ["volume_spike"]  # median 0: 10 x 1


# ---- bounds --------------------------------------------------------------------------------------------------

def test_the_profile_stays_small_whatever_the_traffic() -> None:
    profile = Profile()
    limits = Thresholds(networks_kept=64)
    many = [event(T0 + timedelta(seconds=i), ip=f"10.{i // 256}.{i % 256}.1") for i in range(2000)]
    run([*many, *[wrong_secret(at) for at in every(1, 500)]], profile, limits)
    run([forbidden(T0 + timedelta(seconds=i), f"scope-{i}", f"site-{i}") for i in range(500)], profile, limits)
    run([event(T0 + timedelta(hours=h)) for h in range(24 * 30)], profile, limits)
    assert len(profile.networks) <= 64 and len(profile.guesses) <= 10 and len(profile.probes) <= 10
    assert len(profile.probed) <= 32 and len(profile.hours) <= 7 * 24 + 1  # the 7 days before, and this hour


def test_a_profile_comes_back_from_json_as_it_was() -> None:
    profile = Profile()
    run([event(at, ip=f"198.51.{i}.7") for i, at in enumerate(every(30, 15))], profile)
    run([wrong_secret(at) for at in every(5, 4)], profile)
    again = msgspec.json.decode(msgspec.json.encode(profile), type=Profile)
    assert again == profile
    follow = [event(T0 + timedelta(minutes=8), ip=f"203.0.{i}.1") for i in range(5)]
    assert run(follow, again) == run(follow, profile) != []
