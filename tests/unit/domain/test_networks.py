"""IP allowlists in the domain: entries normalised once, refused by name, addresses checked against them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyledger.domain.commands import ChangeAccess, CreateKey
from keyledger.domain.errors import ValidationError
from keyledger.domain.events import decode_event, encode_event
from keyledger.domain.key import decide, fold
from keyledger.domain.networks import NO_IP, clean_networks, network_refusal, parse_networks


def test_entries_are_normalised_and_deduplicated() -> None:
    assert clean_networks([" 203.0.113.5/24", "2001:DB8::/32", "198.51.100.7", "203.0.113.0/24",
                           "::ffff:192.0.2.0/120"]) == ("203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32",
                                                        "192.0.2.0/24")


@pytest.mark.parametrize("entry", ["203.0.113.0/33", "not-a-network", "", "10.0.0.0/8/8", "fe80::1%eth0/64"])
def test_a_bad_entry_is_refused_by_name(entry: str) -> None:
    with pytest.raises(ValidationError, match="allowed_networks entry") as refused:
        clean_networks(["10.0.0.0/8", entry])
    assert repr(entry)[:20] in str(refused.value)


def test_too_many_entries_are_refused() -> None:
    with pytest.raises(ValidationError, match="too many allowed_networks: 101"):
        clean_networks([f"10.0.{n}.0/24" for n in range(101)])


def test_an_address_inside_passes_and_one_outside_is_named() -> None:
    networks = parse_networks(clean_networks(["203.0.113.0/24", "2001:db8::/32"]))
    assert network_refusal(networks, "203.0.113.250") is None
    assert network_refusal(networks, "::ffff:203.0.113.9") is None  # a mapped IPv4 address is that address
    assert network_refusal(networks, "2001:db8::42") is None
    assert network_refusal(networks, "198.51.100.7") == "ip 198.51.100.7 is outside the networks this key is " \
                                                        "limited to"
    assert network_refusal(networks, None) == NO_IP == ("this key is limited to listed networks; the request "
                                                        "names no ip")
    assert "'garbage' is not an ip address" in (network_refusal(networks, "garbage") or "")


def test_the_key_carries_its_list_from_create_to_change_and_old_events_load_without_one() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    (created,) = decide(None, CreateKey(key_id="k", name="n", secret_hash="h", prefix="kl", start="kl_k",
                                        allowed_networks=("10.1.2.3/8",)), now)
    state = fold([created])
    assert state is not None and state.allowed_networks == ("10.0.0.0/8",)
    renamed = decide(state, ChangeAccess(key_id="k", name="m"), now)
    assert fold(renamed, state).allowed_networks == ("10.0.0.0/8",)  # type: ignore[union-attr]
    cleared = decide(state, ChangeAccess(key_id="k", allowed_networks=()), now)
    assert fold(cleared, state).allowed_networks == ()  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="'nope'"):
        decide(state, ChangeAccess(key_id="k", allowed_networks=("nope",)), now)
    old = encode_event(created).replace(b',"allowed_networks":["10.0.0.0/8"]', b"")
    assert b"allowed_networks" not in old and decode_event(old).allowed_networks == ()  # type: ignore[union-attr]
