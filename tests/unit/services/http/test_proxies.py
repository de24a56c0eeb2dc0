"""The client address behind trusted proxies: X-Forwarded-For and Forwarded read from the right, past trusted
hops only, never believing garbage or a header the client could have written alone."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyledger.services.http.proxies import MAX_HOPS, TrustedProxies, forwarded_hops, parse_hop, x_forwarded_for_hops

PROXIES = TrustedProxies(["127.0.0.1/32", "10.0.0.0/8", "2001:db8:ffff::/48"])
PEER = "127.0.0.1"


@pytest.mark.parametrize("text, address", [
    ("192.0.2.1", "192.0.2.1"),
    ("  192.0.2.1 ", "192.0.2.1"),
    ("192.0.2.1:4711", "192.0.2.1"),
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("[2001:db8::1]:4711", "2001:db8::1"),
    ('"[2001:db8::1]:4711"', "2001:db8::1"),
    ('"192.0.2.1"', "192.0.2.1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4 mapped into IPv6 is the IPv4 address
    ("[::ffff:192.0.2.1]:80", "192.0.2.1"),
    ("2001:DB8::0001", "2001:db8::1"),
])
def test_a_hop_in_every_form_proxies_write(text: str, address: str) -> None:
    assert str(parse_hop(text)) == address


@pytest.mark.parametrize("text", [
    "", " ", "unknown", "_hidden", "_SEVKISEK", "example.com", "192.0.2", "192.0.2.1.5", "01.2.3.4", "300.1.1.1",
    "192.0.2.1:", "192.0.2.1:port", "192.0.2.1:80:80", "192.0.2.1:٣", "[2001:db8::1", "[2001:db8::1]:",
    "[2001:db8::1]x", "[2001:db8::1]:80x", "[192.0.2.1]x", "fe80::1%eth0", "[fe80::1%25eth0]", '"', '""',
    "1.2.3.4/24", "<script>", "192.0.2.1\x00",
])
def test_anything_else_is_no_hop(text: str) -> None:
    assert parse_hop(text) is None


@pytest.mark.parametrize("peer, x_forwarded_for, forwarded, client", [
    # nothing trusted about an untrusted peer, whatever it sends
    ("192.0.2.9", "198.51.100.1", "for=198.51.100.1", "192.0.2.9"),
    # the peer is trusted: the first untrusted hop from the right
    (PEER, "198.51.100.1", None, "198.51.100.1"),
    (PEER, "203.0.113.66, 198.51.100.1", None, "198.51.100.1"),  # the client's own claim is left of its address
    (PEER, "203.0.113.66, 198.51.100.1, 10.1.2.3, 10.0.0.1", None, "198.51.100.1"),
    (PEER, "10.9.9.9, 10.1.2.3", None, "10.9.9.9"),  # all trusted: the leftmost
    (PEER, "198.51.100.1:5123", None, "198.51.100.1"),
    (PEER, "[2001:db8::7]:5123, 2001:db8:ffff::1", None, "2001:db8::7"),
    # garbage ends the walk at the last good hop, never believed itself
    (PEER, "garbage", None, PEER),
    (PEER, "", None, PEER),
    (PEER, "198.51.100.1, unknown, 10.0.0.5", None, "10.0.0.5"),
    (PEER, "198.51.100.1,,10.0.0.5", None, "10.0.0.5"),
    (PEER, "198.51.100.1, 10.0.0.5,", None, PEER),
    # Forwarded (RFC 7239), quoted IPv6 with a port, other parameters, case
    (PEER, None, 'for="[2001:db8::1]:1234"', "2001:db8::1"),
    (PEER, None, "for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
    (PEER, None, 'For="_gazonk", for=198.51.100.17;proto=https, for=10.0.0.2', "198.51.100.17"),
    (PEER, None, "for=unknown, for=10.0.0.2", "10.0.0.2"),
    (PEER, None, "proto=https", PEER),  # an element without for=
    (PEER, None, "for=198.51.100.17;for=198.51.100.18", PEER),  # two for= in one element
    (PEER, None, 'for="198.51.100.17', PEER),  # an unterminated quote
    (PEER, None, 'for="x,for=198.51.100.17"', PEER),  # a quoted comma splits into garbage, not an address
    (PEER, None, "for", PEER),
    # both headers: believed only when they name the same client
    (PEER, "198.51.100.1", "for=198.51.100.1", "198.51.100.1"),
    (PEER, "198.51.100.1", "for=203.0.113.66", PEER),
    (PEER, "198.51.100.1", "garbage", PEER),
])
def test_the_client_behind_trusted_proxies(peer: str, x_forwarded_for: str | None, forwarded: str | None,
                                          client: str) -> None:
    assert PROXIES.client(peer, x_forwarded_for, forwarded) == client


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert not TrustedProxies()
    assert TrustedProxies().client(PEER, "198.51.100.1", "for=198.51.100.1") == PEER
    assert PROXIES.client(None, "198.51.100.1", None) is None
    assert PROXIES.client("testclient", "198.51.100.1", None) == "testclient"  # not an address: not trusted


def test_a_mapped_peer_is_trusted_as_its_ipv4_address() -> None:
    assert PROXIES.client("::ffff:127.0.0.1", "198.51.100.1", None) == "198.51.100.1"


def test_at_most_max_hops_are_read() -> None:
    trusted_chain = ", ".join(["198.51.100.1", *[f"10.0.0.{i}" for i in range(1, 100)]])
    assert PROXIES.client(PEER, trusted_chain, None) == f"10.0.0.{100 - MAX_HOPS}"
    assert len(list(x_forwarded_for_hops(trusted_chain))) == MAX_HOPS + 1
    assert len(list(forwarded_hops(", ".join(["for=10.0.0.1"] * 100)))) == MAX_HOPS + 1


addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(lambda a: a.ipv4_mapped or a if a.version == 6
                                                                       else a)
untrusted = addresses.filter(lambda a: not PROXIES.trusts(a))
trusted = st.one_of(st.ip_addresses(network="10.0.0.0/8"), st.ip_addresses(network="2001:db8:ffff::/48"))


def xff_entry(address: object) -> str:
    return str(address)


def forwarded_entry(address: object) -> str:
    text = str(address)
    return f'for="[{text}]:443"' if ":" in text else f"for={text};proto=https"


@given(prefix=st.text(), client=untrusted, hops=st.lists(trusted, max_size=5))
def test_whatever_the_client_writes_the_address_its_proxy_appended_wins(prefix: str, client: object,
                                                                        hops: list[object]) -> None:
    """The client controls everything left of what its first trusted proxy appended: none of it matters."""
    chain = ", ".join(xff_entry(hop) for hop in [client, *hops])
    assert PROXIES.client(PEER, f"{prefix}, {chain}", None) == str(client)
    chain = ", ".join(forwarded_entry(hop) for hop in [client, *hops])
    assert PROXIES.client(PEER, None, f"{prefix}, {chain}") == str(client)


@given(peer=st.text(max_size=20) | addresses.map(str), x_forwarded_for=st.none() | st.text(),
       forwarded=st.none() | st.text())
def test_any_text_gives_the_peer_or_an_address_it_names(peer: str, x_forwarded_for: str | None,
                                                        forwarded: str | None) -> None:
    client = PROXIES.client(peer, x_forwarded_for, forwarded)
    if client != peer:
        assert client is not None
        named = list(x_forwarded_for_hops(x_forwarded_for or "")) + list(forwarded_hops(forwarded or ""))
        assert ip_address(client) in named


@given(peer=addresses.filter(lambda a: not PROXIES.trusts(a)), x_forwarded_for=st.none() | st.text(),
       forwarded=st.none() | st.text())
def test_an_untrusted_peer_is_always_the_client(peer: object, x_forwarded_for: str | None,
                                               forwarded: str | None) -> None:
    assert PROXIES.client(str(peer), x_forwarded_for, forwarded) == str(peer)
