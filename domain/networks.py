"""IP allowlists: the networks a key may be used from (``allowed_networks``). Pure: text in, networks out.

A key's list is validated and normalised once, when a command names it (:func:`clean_networks`); the verify
path parses it once per key state (:func:`parse_networks`, memoised by the caller) and asks
:func:`network_refusal` per request, which parses only the request's address.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from keyledger.domain.errors import ValidationError

MAX_NETWORKS = 100  # entries in one key's allowlist
MAX_ENTRY_LENGTH = 50  # the longest CIDR text: an IPv6 address with a prefix length fits in 43
NO_IP = "this key is limited to listed networks; the request names no ip"

Network = IPv4Network | IPv6Network


def clean_networks(entries: Iterable[str]) -> tuple[str, ...]:
    """The allowlist as stored: each entry a network in CIDR form (``203.0.113.0/24``, ``2001:db8::/32``; a
    single address is its /32 or /128; host bits are cleared), duplicates dropped (first kept). A refused
    entry is named: ValidationError ``allowed_networks entry 'x' is not a network (CIDR)``."""
    cleaned: dict[str, None] = {}
    for entry in entries:
        text = entry.strip()
        if not text or len(text) > MAX_ENTRY_LENGTH or not text.isascii() or "%" in text:
            raise ValidationError(f"allowed_networks entry {entry[:MAX_ENTRY_LENGTH]!r} is not a network (CIDR), "
                                  "e.g. 203.0.113.0/24 or 2001:db8::/32")
        try:
            network = ip_network(text, strict=False)
        except ValueError:
            raise ValidationError(f"allowed_networks entry {entry!r} is not a network (CIDR), "
                                  "e.g. 203.0.113.0/24 or 2001:db8::/32") from None
        cleaned[str(_unmapped(network))] = None
    if len(cleaned) > MAX_NETWORKS:
        raise ValidationError(f"too many allowed_networks: {len(cleaned)} (at most {MAX_NETWORKS})")
    return tuple(cleaned)


Span = tuple[int, int, int]  # a network as (IP version, first address, last address), the addresses as integers


def parse_networks(entries: tuple[str, ...]) -> tuple[Span, ...]:
    """The spans of a list :func:`clean_networks` made (so every entry parses): what :func:`network_refusal`
    compares an address with in a few integer comparisons."""
    return tuple((net.version, int(net.network_address), int(net.broadcast_address))
                 for net in (ip_network(entry) for entry in entries))


AddressParser = Callable[[str], "tuple[int, int] | None"]


def parse_address(text: str) -> tuple[int, int] | None:
    """The address ``text`` names as (IP version, integer); an IPv4 address mapped into IPv6 is the IPv4
    address; None if ``text`` is no address. (The verify path reads addresses with ``inet_pton`` instead, a
    fifth of the cost, to the same result: ``services.verify.networks``.)"""
    if "%" in text:  # a zone id is nothing a client's address has
        return None
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return 4, int(address.ipv4_mapped)
    return address.version, int(address)


def network_refusal(spans: tuple[Span, ...], ip: str | None, parse: AddressParser = parse_address) -> str | None:
    """None when ``ip`` lies in one of the networks ``spans`` (:func:`parse_networks`); else why not, naming the
    address. ``parse`` reads the address (:func:`parse_address`, or a faster reader with the same answers)."""
    if not ip:
        return NO_IP
    address = parse(ip)
    if address is None:
        return f"this key is limited to listed networks; {ip!r} is not an ip address"
    version, value = address
    for span_version, first, last in spans:
        if span_version == version and first <= value <= last:
            return None
    return f"ip {ip.strip()} is outside the networks this key is limited to"


def _unmapped(network: Network) -> Network:
    """``::ffff:192.0.2.0/120`` is ``192.0.2.0/24``: addresses are compared as IPv4 when they are."""
    if isinstance(network, IPv6Network) and network.prefixlen >= 96 and network.network_address.ipv4_mapped:
        return IPv4Network((network.network_address.ipv4_mapped, network.prefixlen - 96))
    return network
