"""One delivery attempt over HTTP, to an address checked the moment before.

The host is resolved here, every address it resolves to is checked against the policy
(:mod:`keyledger.domain.webhook_urls`), and the connection goes to the checked address itself, so a DNS
answer that changes between the check and the connect (rebinding) cannot lead anywhere else. For https the
TLS server name and the certificate check stay the host's name; the ``Host`` header is the URL's. Redirects are
not followed (a 3xx is a failure), no proxy from the environment is used, and an attempt that has not been
answered within ``timeout`` seconds, all told, fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence

import httpx
import msgspec

from keyledger.domain.webhook_urls import Address, Network, Target, UrlRefused, check_addresses, parse_target

Resolver = Callable[[str, int], Awaitable[list[Address]]]
TIMEOUT = 10.0  # seconds an attempt may take, from the connect to the answer's status
MAX_ANSWER_BYTES = 64 * 1024  # read of an answer's body, then the connection is dropped


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How an attempt ended: the answer's status (None: no answer) and, unless a 2xx, why it failed."""

    status: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


async def system_resolver(host: str, port: int) -> list[Address]:
    """The addresses ``host`` resolves to (the system resolver), each once."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlRefused(f"host {host!r} does not resolve ({exc.strerror or exc})") from None
    found: list[Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


async def checked_address(target: Target, allowed: Sequence[Network], resolver: Resolver) -> Address:
    """The address to connect to for ``target``, once it and every other address of the host passed the
    policy; UrlRefused otherwise."""
    addresses = [ipaddress.ip_address(target.host)] if target.literal else await resolver(target.host, target.port)
    check_addresses(target.host, addresses, allowed)
    return addresses[0]


def new_client(verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """An HTTP client for one endpoint's deliveries (one connection, kept alive between them)."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, verify=verify, timeout=httpx.Timeout(TIMEOUT),
                             limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))


class Sender:
    """Posts deliveries to the address checked for each attempt."""

    def __init__(self, allowed: Sequence[Network], resolver: Resolver = system_resolver,
                 timeout: float = TIMEOUT) -> None:
        self._allowed, self._resolver, self._timeout = tuple(allowed), resolver, timeout

    async def post(self, client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """POST ``body`` to ``url``; never raises for what the network or the receiver does."""
        try:
            target = parse_target(url)
            address = await checked_address(target, self._allowed, self._resolver)
        except UrlRefused as exc:
            return Outcome(error=f"refused: {exc}")
        shown = f"[{address}]" if address.version == 6 else str(address)
        extensions = {"sni_hostname": target.host} if target.scheme == "https" and not target.literal else {}
        request = client.build_request(
            "POST", f"{target.scheme}://{shown}:{target.port}{target.target}", content=body, extensions=extensions,
            headers={**headers, "host": target.host_header, "user-agent": "keyledger-webhooks"})
        try:
            async with asyncio.timeout(self._timeout):
                response = await client.send(request, stream=True)
                try:
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > MAX_ANSWER_BYTES:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            return Outcome(error=f"no answer within {self._timeout:g} s")
        except httpx.TimeoutException:
            return Outcome(error=f"no answer within {self._timeout:g} s")
        except httpx.HTTPError as exc:
            return Outcome(error=f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__)
        if 200 <= response.status_code < 300:
            return Outcome(status=response.status_code)
        where = f" to {response.headers.get('location', '')[:200]}" if 300 <= response.status_code < 400 else ""
        return Outcome(status=response.status_code, error=f"answered {response.status_code}{where}" +
                       (" (redirects are not followed)" if where else ""))
