"""The gate: authenticates API callers by their key, and hands verify requests to the one verify flow
(``services.verify.flow``); each call leaves exactly one usage event, and the key's rate-limit numbers go
out as ``X-RateLimit-*`` headers."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from litestar.datastructures import Address

from keyledger.domain import token
from keyledger.domain.access import check_access
from keyledger.domain.key import KeyState
from keyledger.domain.usage import FIELD_LIMITS
from keyledger.services.clock import Clock
from keyledger.services.http.errors import ApiError, auth_required, forbidden
from keyledger.services.http.ports import CallerRegistry, LastUse, Limiter, UsageSink
from keyledger.services.http.proxies import TrustedProxies
from keyledger.services.http.ratelimit_headers import attach_decision, scope_request_id
from keyledger.services.keys.credentials import CREDENTIAL_PREFIX
from keyledger.services.observe.metrics import RATE_ALLOWED, RATE_REFUSED
from keyledger.services.verify.call import VerifyCall, verify_call
from keyledger.services.verify.credits import CreditDecision, CreditLedger
from keyledger.services.verify.flow import VerifyFlow
from keyledger.services.verify.owners import OwnerDecision, OwnerDirectory
from keyledger.services.verify.throttles import FailureThrottle, RateDecision
from keyledger.services.verify.verifier import Verdict, Verifier

_USER_AGENT_LENGTH = FIELD_LIMITS["user_agent"]


class Connection(Protocol):
    """What the gate reads of a request: a Litestar ``Request``/``ASGIConnection``, or a
    :class:`ScopeConnection` read straight from the ASGI scope (the raw verify route)."""

    @property
    def scope(self) -> Any: ...  # the ASGI scope: its ``state`` holds the request id and the rate decision

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def client(self) -> Address | None: ...


class ScopeConnection:
    """A :class:`Connection` on a bare ASGI scope: its headers decoded once (the first of repeated
    names wins, as ``Request.headers.get``), its peer address as Litestar gives it."""

    __slots__ = ("client", "headers", "scope")

    def __init__(self, scope: Any) -> None:
        self.scope = scope
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        self.headers: Mapping[str, str] = headers
        peer = scope.get("client")
        self.client = Address(*peer) if peer else None


def presented_key(request: Connection) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``x-api-key: <key>``; None if absent."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


def request_id(request: Connection) -> str:
    """The caller's ``x-request-id`` (visible ASCII, at most 100 characters), else one made up once for
    this request (the same one the ``X-Request-Id`` response header and the request's log lines carry)."""
    return scope_request_id(request.scope)


def user_agent_of(request: Connection) -> str | None:
    """The caller's user agent, cut to what the audit trail keeps of one (``FIELD_LIMITS``)."""
    return (request.headers.get("user-agent") or "")[:_USER_AGENT_LENGTH] or None


def peer_address(request: Connection) -> str | None:
    """The address of the connection's peer: the caller itself, or the last proxy on its way (the client
    behind trusted proxies: :meth:`Gate.address_of`)."""
    return request.client.host if request.client else None


_CLIENT = "keyledger.client"  # where the scope keeps the client address resolved through trusted proxies
_CALLER = "keyledger.caller_ip"  # and the address identify_caller charged (verify records it as the caller's)


def forwarding_headers(request: Connection) -> tuple[str | None, str | None]:
    """``X-Forwarded-For`` and ``Forwarded``, each with its repeated headers joined by commas in the
    order received (a proxy may append a header of its own rather than extend the client's)."""
    x_forwarded_for: list[str] = []
    forwarded: list[str] = []
    for name, value in request.scope["headers"]:
        name = name.lower()
        if name == b"x-forwarded-for":
            x_forwarded_for.append(value.decode("latin-1"))
        elif name == b"forwarded":
            forwarded.append(value.decode("latin-1"))
    return (",".join(x_forwarded_for) if x_forwarded_for else None, ",".join(forwarded) if forwarded else None)


def _action(request: Connection) -> str:
    """``METHOD /route/template`` (``GET /v1/keys/{key_id}``): never the raw path, which is the caller's to
    fill (a token pasted into a URL, a NUL byte...)."""
    template = request.scope.get("path_template") or "(no route)"
    return f"{request.scope.get('method', '')} {template.replace(':str}', '}')}"


class Gate:
    """Who may call, and the verify answer (through the :class:`VerifyFlow` it builds from the same
    verifier, limiter, last-used tracker and usage sink); built once per process from the components."""

    def __init__(self, *, verifier: Verifier, limiter: Limiter, auth_failures: FailureThrottle, last_used: LastUse,
                 usage: UsageSink, clock: Clock, rate_tiers: Mapping[str, int], verify_token: str | None,
                 token_prefix: str = token.DEFAULT_PREFIX, forwarded_failures: FailureThrottle | None = None,
                 callers: CallerRegistry | None = None, verify_open: bool = False,
                 proxies: TrustedProxies | None = None, credits: CreditLedger | None = None,
                 owners: OwnerDirectory | None = None) -> None:
        self._callers, self._verify_open = callers, verify_open
        self._proxies = proxies or TrustedProxies()
        self._verifier, self._failures, self._clock, self._verify_token = verifier, auth_failures, clock, verify_token
        self.flow = VerifyFlow(verifier=verifier, limiter=limiter, last_used=last_used, usage=usage, clock=clock,
                               rate_tiers=rate_tiers, token_prefix=token_prefix, credits=credits, owners=owners,
                               forwarded_failures=forwarded_failures
                               or FailureThrottle(auth_failures.limit, clock=auth_failures.clock))

    def address_of(self, request: Connection) -> str | None:
        """Where the request comes from: its socket peer, or, when that peer is a trusted proxy
        (``KEYLEDGER_TRUSTED_PROXIES``), the client its ``X-Forwarded-For``/``Forwarded`` hops lead to
        (``services.http.proxies``). Resolved once per request."""
        peer = peer_address(request)
        if not self._proxies.trusts_peer(peer):
            return peer
        scope = request.scope
        if _CLIENT not in scope:
            scope[_CLIENT] = self._proxies.client(peer, *forwarding_headers(request))
        found: str | None = scope[_CLIENT]
        return found

    async def authenticate(self, request: Connection, scopes: tuple[str, ...],
                           presented: str | None = None, proven: bool = False) -> KeyState:
        """The caller's key if it is valid, within its rate limit and holds one of ``scopes`` globally.
        ``presented``: the key to check instead of the request's headers (the dashboard's session key);
        ``proven``: that key already proved itself (a live dashboard session signed in with it).

        Otherwise 401 (and a failure counted against the client's address when a key was presented), 429
        or 403 (also when the key has ``allowed_networks`` and the client's address, as resolved through
        trusted proxies, lies outside them). A client past ``KEYLEDGER_AUTH_FAILURE_LIMIT`` failures gets 429
        for anything but a proven credential: a proven session, or a key whose secret this process already
        accepted (no argon2).
        """
        client = self.address_of(request) or "unknown"
        presented = presented if presented is not None else presented_key(request)
        usage = functools.partial(self.record, request, action=_action(request),
                                  presented=presented, ip=client, user_agent=user_agent_of(request))
        blocked = None if proven else self._failures.refusal(client)
        if blocked is None:
            verdict = (await self._verifier.verify(presented, scopes[0], source=client, caller=client)
                       if presented is not None else None)
        else:
            verdict = self._verifier.warm(presented, scopes[0]) if presented is not None else None
            if verdict is None:
                attach_decision(request.scope, blocked)
                await usage(verdict=None, scope=scopes[0], outcome="RATE_LIMITED")
                raise ApiError(429, "RATE_LIMITED", "Too many failed authentication attempts")
        verdict, scope = _any_scope(verdict, scopes)
        if verdict is not None and verdict.code == "UNAVAILABLE":
            await usage(verdict=verdict, scope=scope)
            raise ApiError(503, "UNAVAILABLE", "this replica cannot confirm its keys are current; retry")
        if verdict is None or verdict.key is None or verdict.code not in ("VALID", "FORBIDDEN"):
            if presented is not None:  # nothing presented, nothing tried: no failure to count
                self._failures.record(client)
            await usage(verdict=verdict, scope=scope)
            if verdict is not None and verdict.code == "RATE_LIMITED":
                raise ApiError(429, "RATE_LIMITED", "Too many attempts for this key")
            raise auth_required()
        key = verdict.key
        decision = await self.flow.charge(key)
        attach_decision(request.scope, decision)
        (RATE_ALLOWED if decision.allowed else RATE_REFUSED).inc()
        if not decision.allowed:
            await usage(verdict=verdict, scope=scope, outcome="RATE_LIMITED")
            raise ApiError(429, "RATE_LIMITED", "Rate limit exceeded")
        await self._within_networks(key, client, lambda refused: usage(verdict=refused, scope=scope))
        await usage(verdict=verdict, scope=scope)
        if verdict.code == "FORBIDDEN":
            raise forbidden()
        self.flow.touch(key, self._clock())
        return key

    async def identify_caller(self, request: Connection, credential_header: str | None = None) -> str:
        """Who calls verify: ``credential:<id>`` (a verify credential), ``service-token``
        (``KEYLEDGER_VERIFY_TOKEN``), ``key:<id>`` (an ``admin:apikeys`` key; not charged to its rate
        limit) or ``open`` (only when ``KEYLEDGER_VERIFY_OPEN`` is set). Else 401 with its usage event;
        a credential that fails counts against the caller's address (past the limit, 429 for all but a
        verify credential, the service token or an admin key this process already accepted), a missing
        one does not (it tried nothing, and the body it may still be sending is never read).
        An admin key with ``allowed_networks`` calls only from an address inside them (else 403, recorded).
        ``credential_header`` (forward-auth: ``X-Keyledger-Caller``) carries the credential instead of
        ``Authorization``/``x-api-key``, which then belong to the end client; the caller is then the
        gateway, its socket peer (its ``X-Forwarded-For`` names the end client)."""
        client = (peer_address(request) if credential_header is not None else self.address_of(request)) \
            or "unknown"
        request.scope[_CALLER] = client
        if credential_header is None:
            presented = presented_key(request)
        else:
            presented = (request.headers.get(credential_header) or "").strip() or None
        if presented is not None:
            if self._verify_token is not None and hmac.compare_digest(presented.encode(), self._verify_token.encode()):
                return "service-token"
            credential = self._callers.identify(presented) if self._callers is not None else None
            if credential is not None:
                return credential
        if self._verify_open:
            return "open"
        refusal = self._failures.refusal(client)
        if presented is not None and not presented.startswith(CREDENTIAL_PREFIX + "_"):
            verdict = (await self._verifier.verify(presented, "admin:apikeys", source=client, caller=client)
                       if refusal is None else self._verifier.warm(presented, "admin:apikeys"))
            if verdict is not None and verdict.valid and verdict.key is not None:
                await self._within_networks(verdict.key, client, lambda refused: self.record(
                    request, action="verify", presented=presented, scope="admin:apikeys", verdict=refused,
                    caller_ip=client))
                return f"key:{verdict.key.key_id}"
        await self.record(request, action="verify", verdict=None, presented=None, scope=None, outcome="AUTH_REQUIRED",
                          caller_ip=client, reason="the verify caller is not authenticated")
        if refusal is not None:
            attach_decision(request.scope, refusal)
            raise ApiError(429, "RATE_LIMITED", "Too many failed authentication attempts")
        if presented is not None:
            self._failures.record(client)
        raise auth_required(f"verify callers authenticate: {credential_header or 'Authorization: Bearer'} "
                            "<verify credential>")

    async def _within_networks(self, key: KeyState, client: str,
                               record: Callable[[Verdict], Awaitable[None]]) -> None:
        """For a calling key with ``allowed_networks``: 403 naming ``client`` when it lies outside them, the
        refusal recorded by ``record`` first."""
        if key.allowed_networks and (outside := self.flow.networks.refusal(key, client)) is not None:
            await record(Verdict(valid=False, code="FORBIDDEN", reason=outside, key=key))
            raise forbidden(f"{outside} (the calling key's allowed_networks)")

    def call(self, request: Connection, *, key: str | None, scope: str, website_id: str | None = None,
             data: str | None = None, ip: str | None = None, user_agent: str | None = None, caller: str | None = None,
             action: str = "verify", caller_ip: str | None = None, cost: int = 1) -> VerifyCall:
        """The verify request ``request`` carries, validated as every transport's is (:func:`verify_call`:
        :class:`~keyledger.domain.errors.ValidationError`, a 400), with its request id and the time it is
        decided by. ``action`` names the call in the usage event; ``caller_ip`` the caller's address, by
        default the one :meth:`identify_caller` settled on (forward-auth: the gateway's socket peer), else
        :meth:`address_of`."""
        if caller_ip is None:
            caller_ip = request.scope[_CALLER] if _CALLER in request.scope else self.address_of(request)
        return verify_call(key=key, scope=scope, at=self._clock(), website_id=website_id, data=data, ip=ip,
                           user_agent=user_agent, caller=caller, caller_ip=caller_ip, request_id=request_id(request),
                           action=action, cost=cost)

    async def verify(self, request: Connection, call: VerifyCall) -> tuple[Verdict, RateDecision | None,
                                                                           CreditDecision | None,
                                                                           OwnerDecision | None]:
        """The flow's verdict on ``call`` and, when a key was identified, its rate-limit decision (charged to
        the key being verified, never to the caller), whose ``X-RateLimit-*`` headers go out with the answer
        (those of the client-ip throttle's refusal, when that refused), and its credits when it has some."""
        verified = await self.flow.verify(call)
        rate, decision = verified.rate, verified.decision
        if decision is not None:
            attach_decision(request.scope, decision)
        if rate is not None:
            (RATE_ALLOWED if rate.allowed else RATE_REFUSED).inc()
        return verified.verdict, rate, verified.credits, verified.owner

    async def record(self, request: Connection, *, action: str, verdict: Verdict | None, presented: str | None,
                     scope: str | None, ip: str | None = None, user_agent: str | None = None,
                     outcome: str | None = None, caller_ip: str | None = None, reason: str | None = None) -> None:
        """Record the usage event of an authenticated call (or of a verify caller that failed to authenticate)
        through the verify flow's one builder (never the secret)."""
        await self.flow.record(self.flow.usage_event(
            action=action, at=self._clock(), verdict=verdict, presented=presented, scope=scope, ip=ip,
            user_agent=user_agent, outcome=outcome, caller_ip=caller_ip, reason=reason,
            request_id=request_id(request)))


def _any_scope(verdict: Verdict | None, scopes: tuple[str, ...]) -> tuple[Verdict | None, str]:
    """A FORBIDDEN verdict for the first scope becomes VALID if a later scope is granted;
    returns the verdict and the scope it speaks of."""
    if verdict is None or verdict.code != "FORBIDDEN" or verdict.key is None:
        return verdict, scopes[0]
    for scope in scopes[1:]:
        decision = check_access(verdict.key.access, scope)
        if decision.allowed:
            return Verdict(valid=True, code="VALID", reason=decision.reason, key=verdict.key,
                           granted_by=decision.granted_by), scope
    return verdict, scopes[0]
