"""The watch's rules: each usage event of a key updates that key's small :class:`Profile` and returns the
rules it matched (:class:`~keyledger.domain.findings.Match`).

Pure: every time is the event's own ``at``, never a clock, so replaying the usage table gives what the live
watch gave. A profile stays small whatever the traffic: at most ``networks_kept`` networks, the hours of the
last ``volume_spike_days`` days, and the latest ``secret_guessing`` wrong secrets and ``scope_probing``
refusals (a window holds N events within M minutes when its N latest do), plus the scopes and resources of
the latest :data:`PROBED_KEPT` refusals.

A *use* is a usage event that names its key (``key_id``): the secret was accepted, whatever the answer
(VALID, FORBIDDEN, REVOKED, RATE_LIMITED...). A *wrong secret* is a ``NOT_FOUND`` event whose ``start`` names
an existing key's id (:func:`guessed_key_id`; the caller checks that the key exists). Its network is the
/24 (IPv6: /48) of the end client's address the verify caller forwarded (``ip``), else of the caller's own
(``caller_ip``).
"""

from __future__ import annotations

import bisect
import ipaddress
import statistics
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import msgspec

from keyledger.domain.findings import (
    MANY_NETWORKS,
    NEW_NETWORK,
    REVOKED_KEY_USED,
    SCOPE_PROBING,
    SECRET_GUESSING,
    VOLUME_SPIKE,
    Match,
    Thresholds,
)
from keyledger.domain.token import KEY_ID_LENGTH, is_key_id
from keyledger.domain.usage import UsageEvent

MINUTE, HOUR, DAY = 60, 3600, 86400
PROBED_KEPT = 32  # scopes and resources of recent refusals a profile remembers
NETWORKS_SHOWN = 50  # networks a many_networks finding lists in its evidence


class Profile(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the watch remembers of one key (times in Unix seconds), stored as JSON between batches."""

    uses: int = 0
    first: float | None = None  # the first use (volume_spike's history begins there)
    networks: dict[str, float] = {}  # network -> its latest use
    hours: dict[int, int] = {}  # hour (Unix time // 3600) -> uses in it
    baseline: tuple[int, float] | None = None  # (hour, median uses per hour of the days before it)
    guesses: list[float] = []  # the latest wrong secrets, in time order
    probes: list[float] = []  # the latest FORBIDDEN answers, in time order
    probed: dict[str, float] = {}  # "scope:<s>" / "resource:<r>" -> its latest FORBIDDEN answer


@lru_cache(maxsize=4096)
def network_of(address: str | None) -> str | None:
    """The /24 (IPv4, also IPv4-mapped IPv6) or /48 (IPv6) network of ``address``; None when it is no address."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.strip().removeprefix("[").removesuffix("]"))
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return str(ipaddress.ip_network((ip, 24 if ip.version == 4 else 48), strict=False))
    except ValueError:
        return None


def guessed_key_id(event: UsageEvent) -> str | None:
    """The key id a ``NOT_FOUND`` verify named in its ``start`` (a well-formed token whose secret, or id, was
    wrong); None for any other event."""
    if event.outcome != "NOT_FOUND" or event.key_id is not None or not event.start:
        return None
    _, underscore, body = event.start.partition("_")
    candidate = body[:KEY_ID_LENGTH]
    return candidate if underscore and len(body) > KEY_ID_LENGTH and is_key_id(candidate) else None


def observe(profile: Profile, event: UsageEvent, limits: Thresholds) -> list[Match]:
    """Apply one event of the profile's key (a use, or a wrong secret for it) to ``profile``; the matches."""
    now = event.at.timestamp()
    if event.key_id is None:
        return _guessing(profile, event, now, limits) if event.outcome == "NOT_FOUND" else []
    found: list[Match] = []
    network = network_of(event.ip) or network_of(event.caller_ip)
    if event.outcome in ("REVOKED", "EXPIRED"):
        found.append(_match(REVOKED_KEY_USED, event.outcome.lower(), event, network, scope=event.scope,
                            user_agent=event.user_agent, caller=event.caller))
    if network is not None:
        found += _networks(profile, event, network, now, limits)
    if event.outcome == "FORBIDDEN":
        found += _probing(profile, event, network, now, limits)
    found += _volume(profile, event, network, now, limits)
    profile.uses += 1
    if profile.first is None or now < profile.first:
        profile.first = now
    return found


def _match(kind: str, subject: str, event: UsageEvent, network: str | None, **evidence: Any) -> Match:
    return Match(kind=kind, subject=subject, at=event.at, evidence={
        **evidence, "ip": event.ip or event.caller_ip, "network": network, "usage_event_id": event.id})


def _networks(profile: Profile, event: UsageEvent, network: str, now: float, limits: Thresholds) -> list[Match]:
    found: list[Match] = []
    networks = profile.networks
    seen = networks.get(network)
    if profile.uses >= limits.new_network_uses and (seen is None or now - seen > limits.new_network_days * DAY):
        found.append(_match(NEW_NETWORK, network, event, network, uses_before=profile.uses,
                            previously_seen=_iso(seen), known_networks=len(networks),
                            window_days=limits.new_network_days))
    window = limits.many_networks_minutes * MINUTE
    if seen is None or now > seen:
        networks[network] = now
    if seen is None and len(networks) > limits.networks_kept:
        del networks[min(networks, key=networks.__getitem__)]
    if seen is None or now - seen > window:  # a network joins the window: count them
        recent = sorted(name for name, at in networks.items() if at >= now - window)
        if len(recent) >= limits.many_networks:
            found.append(_match(MANY_NETWORKS, "", event, network, distinct_networks=len(recent),
                                window_minutes=limits.many_networks_minutes, networks=recent[:NETWORKS_SHOWN]))
    return found


def _latest(times: list[float], now: float, keep: int) -> bool:
    """Add ``now`` to the sorted ``times``, keep the latest ``keep``; whether ``keep`` of them are there."""
    bisect.insort(times, now)
    del times[:-keep]
    return len(times) >= keep


def _guessing(profile: Profile, event: UsageEvent, now: float, limits: Thresholds) -> list[Match]:
    guesses = profile.guesses
    if _latest(guesses, now, limits.secret_guessing) \
            and guesses[-1] - guesses[0] <= limits.secret_guessing_minutes * MINUTE:
        network = network_of(event.ip) or network_of(event.caller_ip)
        return [_match(SECRET_GUESSING, "", event, network, wrong_secrets=len(guesses), start=event.start,
                       window_minutes=limits.secret_guessing_minutes)]
    return []


def _probing(profile: Profile, event: UsageEvent, network: str | None, now: float,
             limits: Thresholds) -> list[Match]:
    probed = profile.probed
    resource = ",".join(part for part in (event.website_id and f"website:{event.website_id}",
                                          event.data and f"data:{event.data}") if part) or "none"
    for target in (f"scope:{event.scope or ''}", f"resource:{resource}"):
        probed[target] = max(now, probed.get(target, now))
    while len(probed) > PROBED_KEPT:
        del probed[min(probed, key=probed.__getitem__)]
    window = limits.scope_probing_minutes * MINUTE
    probes = profile.probes
    if not (_latest(probes, now, limits.scope_probing) and probes[-1] - probes[0] <= window):
        return []
    recent = [target for target, at in probed.items() if at >= probes[0]]
    scopes = sorted(t.removeprefix("scope:") for t in recent if t.startswith("scope:"))
    resources = sorted(t.removeprefix("resource:") for t in recent if t.startswith("resource:"))
    if max(len(scopes), len(resources)) < limits.scope_probing_targets:
        return []
    return [_match(SCOPE_PROBING, "", event, network, forbidden=len(probes), scopes=scopes, resources=resources,
                   window_minutes=limits.scope_probing_minutes)]


def _volume(profile: Profile, event: UsageEvent, network: str | None, now: float,
            limits: Thresholds) -> list[Match]:
    hour, hours = int(now // HOUR), profile.hours
    if hour not in hours:
        kept = limits.volume_spike_days * 24
        for old in [h for h in hours if h < hour - kept]:
            del hours[old]
        while len(hours) > kept:  # hours ahead of this one (clocks that disagree): the earliest go
            del hours[min(hours)]
    count = hours[hour] = hours.get(hour, 0) + 1
    first = now if profile.first is None else min(profile.first, now)
    if now - first < limits.volume_spike_history_hours * HOUR:
        return []
    median = _baseline(profile, hour, int(first // HOUR), limits)
    threshold = limits.volume_spike_factor * max(median, 1.0)
    if not count >= threshold > count - 1:  # once an hour: when its count reaches the threshold
        return []
    return [_match(VOLUME_SPIKE, "", event, network, hour=_iso(hour * HOUR), uses=count, hourly_median=median,
                   factor=limits.volume_spike_factor, history_hours=int((hour * HOUR - first) // HOUR))]


def _baseline(profile: Profile, hour: int, first_hour: int, limits: Thresholds) -> float:
    """The median uses per hour over the hours before ``hour`` (those of the last days in which the key was
    in use, hours without a use counting 0), computed once per hour."""
    if profile.baseline is None or profile.baseline[0] != hour:
        span = range(max(hour - limits.volume_spike_days * 24, first_hour), hour)
        median = float(statistics.median(profile.hours.get(h, 0) for h in span)) if span else 0.0
        profile.baseline = (hour, median)
    return profile.baseline[1]


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()
