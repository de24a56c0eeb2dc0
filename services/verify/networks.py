"""The IP allowlist check of the verify path and of admin calls: a key's ``allowed_networks`` are parsed once per
key state, not per request (:class:`NetworkCheck`); a key without an allowlist never reaches here."""

from __future__ import annotations

from socket import AF_INET, AF_INET6, inet_pton

from keyledger.domain.key import KeyState
from keyledger.domain.networks import Span, network_refusal, parse_networks

MAX_REMEMBERED = 256  # answers remembered per key (by client ip) before they are forgotten together
MAX_KEYS = 100_000  # keys remembered before all are forgotten (parsed again on their next verify)


def fast_address(text: str) -> tuple[int, int] | None:
    """:func:`keyledger.domain.networks.parse_address`'s answer, read with ``inet_pton`` (a fifth of
    ``ip_address``'s cost): (IP version, integer), an IPv4-mapped IPv6 address as the IPv4 one; None if ``text``
    is no address."""
    text = text.strip()
    try:
        if ":" in text:
            value = int.from_bytes(inet_pton(AF_INET6, text), "big")
            return (4, value & 0xFFFFFFFF) if value >> 32 == 0xFFFF else (6, value)
        return 4, int.from_bytes(inet_pton(AF_INET, text), "big")
    except (OSError, ValueError):
        return None


class NetworkCheck:
    """Whether an address may use a key with an allowlist. Per key id it remembers the parsed networks, tied to
    the very tuple of the state they came from (a changed list, a new state, is parsed again once), and the
    answers for the client addresses seen lately (a client verifies again and again from one address)."""

    __slots__ = ("_parsed",)

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[tuple[str, ...], tuple[Span, ...], dict[str, str | None]]] = {}

    def refusal(self, key: KeyState, ip: str | None) -> str | None:
        """None when ``ip`` lies in one of ``key``'s networks; else the reason, naming the address (or saying
        that no ip was named). Only for keys with an allowlist."""
        listed = key.allowed_networks
        memo = self._parsed.get(key.key_id)
        if memo is None or memo[0] is not listed:
            if len(self._parsed) >= MAX_KEYS:
                self._parsed.clear()
            memo = self._parsed[key.key_id] = (listed, parse_networks(listed), {})
        answers = memo[2]
        if ip is None:
            return network_refusal(memo[1], ip, fast_address)
        try:
            return answers[ip]
        except KeyError:
            if len(answers) >= MAX_REMEMBERED:
                answers.clear()
            found = answers[ip] = network_refusal(memo[1], ip, fast_address)
            return found
