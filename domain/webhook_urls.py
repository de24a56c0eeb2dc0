"""Where a webhook may go: the URL's form and the addresses it may reach (SSRF policy), as pure checks.

An endpoint's URL is ``https://`` or ``http://``, with a host and no credentials. Every address its host
resolves to must be a public one: loopback, link-local (cloud metadata at ``169.254.169.254``), private,
unique-local (``fd00:ec2::254``), shared (CGNAT, where ``100.100.100.200`` answers as metadata),
multicast, reserved, documentation and unspecified addresses are refused, also when an IPv6 address
carries one of them inside (IPv4-mapped ``::ffff:127.0.0.1``, IPv4-compatible, 6to4, NAT64, Teredo), unless
the address lies in one of the operator's allowed networks (``KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS``). A host
written as a number in another form than four decimal parts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``:
resolvers read them as IPv4 addresses) is refused outright.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

import msgspec

from keyledger.domain.errors import ValidationError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_LENGTH = 2000
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"  # in decimal, without leading zeros
_DOTTED_QUAD = re.compile(rf"^{_OCTET}(\.{_OCTET}){{3}}$")
_HOST_NAME = re.compile(r"^(?=.{1,253}\.?$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}"
                        r"[a-z0-9_])?)*\.?$", re.IGNORECASE)


class UrlRefused(ValidationError):
    """The endpoint URL, or an address its host resolves to, is not one webhooks may be sent to."""


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """A checked endpoint URL: where to connect (``host``, ``port``) and what to ask for (``target``:
    path and query), with ``literal`` set when the host is an address rather than a name."""

    url: str
    scheme: str
    host: str
    port: int
    target: str
    literal: bool

    @property
    def host_header(self) -> str:
        """The ``Host`` header (the name as written, with the port unless it is the scheme's default)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return shown if self.port == default else f"{shown}:{self.port}"


def parse_target(url: str) -> Target:
    """``url`` checked for form (not yet for where its host points): UrlRefused saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused("url is required")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise UrlRefused("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"url is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("https", "http"):
        raise UrlRefused("url must start with https:// or http://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UrlRefused("url must not carry credentials (user:password@)")
    if parts.fragment:
        raise UrlRefused("url must not have a #fragment")
    host = _host_of(parts)
    scheme = parts.scheme.lower()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url, scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80), target=target,
                  literal=_literal(host) is not None)


def _host_of(parts: SplitResult) -> str:
    host = (parts.hostname or "").rstrip(".") if parts.hostname != "." else ""
    if not host:
        raise UrlRefused("url must name a host")
    if _literal(host) is not None:
        return str(_literal(host))
    if _NUMERIC_HOST.match(host):
        raise UrlRefused(f"host {host!r} is a number that resolvers read as an IPv4 address; write the address "
                         "as four decimal numbers (and it must be a public one)")
    if not _HOST_NAME.match(host):
        raise UrlRefused(f"host {host!r} is not a valid host name")
    return host.lower()


def _literal(host: str) -> Address | None:
    """The address ``host`` is written as (four decimal parts, or IPv6 in brackets), else None."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UrlRefused(f"host {host!r} is not a valid IPv6 address") from None
    return ipaddress.IPv4Address(host) if _DOTTED_QUAD.match(host) else None


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """The allowed networks, parsed (the settings checked them already)."""
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo client), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address, allowed: Sequence[Network] = ()) -> str | None:
    """Why webhooks may not go to ``address`` (None: they may). Inside an allowed network it may."""
    inner = embedded_ipv4(address)
    if any(address in net or (inner is not None and inner in net) for net in allowed):
        return None
    if inner is not None:  # where the connection really goes decides
        why = refusal(inner)
        return None if why is None else f"{why} (inside the IPv6 address {address})"
    kinds = ((address.is_unspecified, "an unspecified"), (address.is_loopback, "a loopback"),
             (address.is_link_local, "a link-local (cloud metadata lives there)"),
             (address.is_multicast, "a multicast"), (getattr(address, "is_site_local", False), "a site-local"),
             (address.is_private, "a private"), (address.is_reserved, "a reserved"))
    for matches, what in kinds:
        if matches:
            return f"{address} is {what} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def check_addresses(host: str, addresses: Sequence[Address], allowed: Sequence[Network] = ()) -> None:
    """UrlRefused unless ``host`` resolved to at least one address and every one of them may be reached."""
    if not addresses:
        raise UrlRefused(f"host {host!r} does not resolve to any address")
    for address in addresses:
        if (why := refusal(address, allowed)) is not None:
            shown = "" if str(address) == host else f"{host!r} resolves to {address}: "
            raise UrlRefused(f"webhooks may only go to public addresses; {shown}{why}. An operator can allow a "
                             "network with KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS")
