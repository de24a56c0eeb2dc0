"""The IP allowlist check of the verify path and of admin calls: a key's ``allowed_networks`` are parsed once per
key state, not per request (:class:`NetworkCheck`); a key without an allowlist never reaches here."""

from __future__ import annotations

from keyledger.domain.key import KeyState
from keyledger.domain.networks import Network, network_refusal, parse_networks


class NetworkCheck:
    """Whether an address may use a key with an allowlist. Parsed networks are remembered per key id, tied to
    the very tuple of the state they came from: a change of the list (a new state) parses it again once."""

    __slots__ = ("_parsed",)

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[tuple[str, ...], tuple[Network, ...]]] = {}

    def refusal(self, key: KeyState, ip: str | None) -> str | None:
        """None when ``ip`` lies in one of ``key``'s networks; else the reason, naming the address (or saying
        that no ip was named). Only for keys with an allowlist."""
        listed = key.allowed_networks
        memo = self._parsed.get(key.key_id)
        if memo is None or memo[0] is not listed:
            memo = self._parsed[key.key_id] = (listed, parse_networks(listed))
        return network_refusal(memo[1], ip)
