"""Which address a request comes from when it passes reverse proxies the operator trusts
(``KEYLEDGER_TRUSTED_PROXIES``). Pure: text in, an address out; no I/O, no clock.

Only a socket peer inside a trusted network is believed about the hops before it, in
``X-Forwarded-For`` or ``Forwarded: for=`` (RFC 7239). Its list is read from the right (the entry the
nearest proxy appended) to the left, past every trusted address: the first untrusted one is the
client; when all are trusted, the leftmost. An entry that is not an address (``unknown``, an obfuscated
id, garbage) ends the walk at the last good hop, and at most :data:`MAX_HOPS` entries are read. When
a request carries both headers and they name different clients, one of them is the client's own
invention and neither is believed: the socket peer is the address.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

MAX_HOPS = 32  # entries read from the right of one header: more than any real chain of proxies
IPAddress = IPv4Address | IPv6Address


def parse_hop(text: str) -> IPAddress | None:
    """The address in one hop as proxies write it: ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1``,
    ``[2001:db8::1]`` or ``[2001:db8::1]:4711``, maybe quoted (``Forwarded``); None for anything else.
    An IPv4 address mapped into IPv6 is the IPv4 address."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if text.startswith("["):  # IPv6, maybe with a port
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit() and port[1:].isascii())):
            return None
    elif text.count(":") == 1:  # IPv4 with a port
        host, _, port = text.partition(":")
        if not (port.isdigit() and port.isascii()):
            return None
    else:
        host = text
    if "%" in host:  # a zone id is nothing a proxy forwards
        return None
    try:
        address = ip_address(host)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def x_forwarded_for_hops(value: str) -> Iterator[IPAddress | None]:
    """The hops of an ``X-Forwarded-For`` value (repeated headers joined by commas), nearest first; None
    for an entry that is not an address. At most :data:`MAX_HOPS` + 1 items (the last: the unread rest)."""
    for entry in reversed(value.rsplit(",", MAX_HOPS)):
        yield parse_hop(entry)


def forwarded_hops(value: str) -> Iterator[IPAddress | None]:
    """The ``for=`` hops of a ``Forwarded`` value (RFC 7239; repeated headers joined by commas), nearest
    first; None for an element without exactly one ``for=`` address or not made of ``name=value`` pairs.
    (A quoted value holding a comma or a semicolon splits its element into malformed ones, never
    into an address.)"""
    for element in reversed(value.rsplit(",", MAX_HOPS)):
        yield _forwarded_for(element)


def _forwarded_for(element: str) -> IPAddress | None:
    found: list[str] = []
    for pair in element.split(";"):
        name, equals, raw = pair.strip().partition("=")
        if not equals or not name or not raw or not name.isascii() or not name.isalnum():
            return None
        if raw.startswith('"') != raw.endswith('"') or (raw[0] == '"' and len(raw) < 2):
            return None
        if name.lower() == "for":
            found.append(raw.replace("\\", ""))  # quoted-pairs: an address has none
    return parse_hop(found[0]) if len(found) == 1 else None


class TrustedProxies:
    """The networks whose hosts are believed about who connected to them (``KEYLEDGER_TRUSTED_PROXIES``);
    none: every request's address is its socket peer."""

    __slots__ = ("_networks",)

    def __init__(self, networks: Iterable[str] = ()) -> None:
        """``networks``: CIDRs (or single addresses), already validated by the settings."""
        self._networks: tuple[IPv4Network | IPv6Network, ...] = tuple(ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: IPAddress) -> bool:
        """Whether ``address`` is a trusted proxy."""
        return any(address in network for network in self._networks)

    def trusts_peer(self, peer: str | None) -> bool:
        """Whether the socket peer ``peer`` (as the server reports it) is a trusted proxy."""
        if not self._networks or not peer:
            return False
        address = parse_hop(peer)
        return address is not None and self.trusts(address)

    def client(self, peer: str | None, x_forwarded_for: str | None, forwarded: str | None) -> str | None:
        """The client's address: ``peer`` itself unless it is a trusted proxy, else where the proxies'
        headers lead (see the module's docstring)."""
        if not self.trusts_peer(peer):
            return peer
        named = {self._walk(hops, peer) for hops in (
            x_forwarded_for_hops(x_forwarded_for) if x_forwarded_for is not None else None,
            forwarded_hops(forwarded) if forwarded is not None else None) if hops is not None}
        return named.pop() if len(named) == 1 else peer

    def _walk(self, hops: Iterator[IPAddress | None], peer: str | None) -> str | None:
        """Past the trusted hops to the first untrusted one; the last good hop at a malformed entry."""
        last = peer
        for count, hop in enumerate(hops):
            if hop is None or count >= MAX_HOPS:
                break
            last = str(hop)
            if not self.trusts(hop):
                break
        return last
