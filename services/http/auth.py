"""The gate: authenticates API callers by their key and answers verify requests; each call leaves
exactly one usage event, and the key's rate-limit numbers go out as ``X-RateLimit-*`` headers."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from litestar.datastructures import Address

from keyledger.domain import token
from keyledger.domain.access import check_access
from keyledger.domain.key import KeyState
from keyledger.domain.rate import limit_of
from keyledger.domain.redaction import redaction_for
from keyledger.domain.usage import UsageEvent, attempted_start, sanitized
from keyledger.services.clock import Clock
from keyledger.services.http.errors import ApiError, auth_required, forbidden
from keyledger.services.http.ports import CallerRegistry, LastUse, Limiter, UsageSink
from keyledger.services.http.proxies import TrustedProxies
from keyledger.services.http.ratelimit_headers import attach_decision, scope_request_id
from keyledger.services.http.ratelimit_headers import new_id as new_id  # re-exported: the in-process verifier uses it
from keyledger.services.http.schemas import VerifyRequest
from keyledger.services.keys.credentials import CREDENTIAL_PREFIX
from keyledger.services.observe.metrics import RATE_ALLOWED, RATE_REFUSED
from keyledger.services.verify.throttles import FailureThrottle, RateDecision
from keyledger.services.verify.verifier import Verdict, Verifier


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
    """The caller's user agent, at most 300 characters."""
    return (request.headers.get("user-agent") or "")[:300] or None


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


def _well_formed(verdict: Verdict | None) -> bool:
    """Whether the presented token parsed (so its ``start`` is the public part of a token)."""
    return verdict is not None and verdict.code != "MALFORMED"


def _action(request: Connection) -> str:
    """``METHOD /route/template`` (``GET /v1/keys/{key_id}``): never the raw path, which is the caller's to
    fill (a token pasted into a URL, a NUL byte...)."""
    template = request.scope.get("path_template") or "(no route)"
    return f"{request.scope.get('method', '')} {template.replace(':str}', '}')}"


class Gate:
    """Who may call, and the verify answer; built once per process from the components."""

    def __init__(self, *, verifier: Verifier, limiter: Limiter, auth_failures: FailureThrottle, last_used: LastUse,
                 usage: UsageSink, clock: Clock, rate_tiers: Mapping[str, int], verify_token: str | None,
                 token_prefix: str = token.DEFAULT_PREFIX, forwarded_failures: FailureThrottle | None = None,
                 callers: CallerRegistry | None = None, verify_open: bool = False,
                 proxies: TrustedProxies | None = None) -> None:
        self._callers, self._verify_open = callers, verify_open
        self._proxies = proxies or TrustedProxies()
        self._verifier, self._limiter, self._failures = verifier, limiter, auth_failures
        # the end-client IPs a verify caller forwards are the caller's to name: counted apart from real
        # callers' addresses, so naming an admin's IP in verify bodies cannot lock that admin out
        self._forwarded_failures = forwarded_failures or FailureThrottle(auth_failures.limit, clock=auth_failures.clock)
        self._last_used, self._usage, self._clock = last_used, usage, clock
        self._tiers, self._verify_token = rate_tiers, verify_token
        self._start_length, self._redaction = token.start_length(token_prefix), redaction_for(token_prefix)

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
        or 403. A client past ``KEYLEDGER_AUTH_FAILURE_LIMIT`` failures gets 429 for anything but a proven
        credential: a proven session, or a key whose secret this process already accepted (no argon2).
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
        decision = await self._limiter.hit(key.key_id, limit_of(key, self._tiers))
        attach_decision(request.scope, decision)
        (RATE_ALLOWED if decision.allowed else RATE_REFUSED).inc()
        if not decision.allowed:
            await usage(verdict=verdict, scope=scope, outcome="RATE_LIMITED")
            raise ApiError(429, "RATE_LIMITED", "Rate limit exceeded")
        await usage(verdict=verdict, scope=scope)
        if verdict.code == "FORBIDDEN":
            raise forbidden()
        self._last_used.touch(key.key_id, self._clock())
        return key

    async def identify_caller(self, request: Connection, credential_header: str | None = None) -> str:
        """Who calls verify: ``credential:<id>`` (a verify credential), ``service-token``
        (``KEYLEDGER_VERIFY_TOKEN``), ``key:<id>`` (an ``admin:apikeys`` key; not charged to its rate
        limit) or ``open`` (only when ``KEYLEDGER_VERIFY_OPEN`` is set). Else 401 with its usage event;
        a credential that fails counts against the caller's address (past the limit, 429 for all but a
        verify credential, the service token or an admin key this process already accepted), a missing
        one does not (it tried nothing, and the body it may still be sending is never read).
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

    async def verify(self, request: Connection, ask: VerifyRequest, caller: str | None = None,
                     action: str = "verify", caller_ip: str | None = None) -> tuple[Verdict, RateDecision | None]:
        """The verdict on ``ask`` and, when a key was identified, its rate-limit decision (charged to the
        key being verified, never to the caller). ``action`` names the call in the usage event; ``caller_ip``
        the caller's address, by default the one :meth:`identify_caller` settled on (forward-auth: the
        gateway's socket peer), else :meth:`address_of`."""
        now = self._clock()
        if caller_ip is None:
            caller_ip = request.scope[_CALLER] if _CALLER in request.scope else self.address_of(request)
        verdict, decision = await self._decide(request, ask, now, caller_ip or "unknown")
        await self.record(request, action=action, verdict=verdict, presented=ask.key, scope=ask.scope,
                          website_id=ask.website_id, data=ask.data, ip=ask.ip, user_agent=ask.user_agent,
                          caller=caller, caller_ip=caller_ip, at=now)
        if verdict.valid and verdict.key is not None:
            self._last_used.touch(verdict.key.key_id, now)
        return verdict, decision

    async def _decide(self, request: Connection, ask: VerifyRequest, now: datetime,
                      caller: str) -> tuple[Verdict, RateDecision | None]:
        blocked = self._forwarded_failures.refusal(ask.ip) if ask.ip else None
        if blocked is not None:
            attach_decision(request.scope, blocked)
            refusal = Verdict(valid=False, code="RATE_LIMITED", reason="too many failed attempts from this client ip")
            return refusal, None
        verdict = await self._verifier.verify(ask.key, ask.scope, ask.website_id, ask.data,
                                              source=f"ip:{ask.ip}" if ask.ip else caller, caller=caller, now=now)
        if ask.ip and verdict.code in ("MALFORMED", "NOT_FOUND"):
            self._forwarded_failures.record(ask.ip)
        key, decision = verdict.key, None
        if key is not None and verdict.code in ("VALID", "FORBIDDEN"):
            decision = await self._limiter.hit(key.key_id, limit_of(key, self._tiers))
            attach_decision(request.scope, decision)
            (RATE_ALLOWED if decision.allowed else RATE_REFUSED).inc()
            if not decision.allowed:
                verdict = Verdict(valid=False, code="RATE_LIMITED", reason="rate limit exceeded", key=key)
        return verdict, decision

    async def record(self, request: Connection, *, action: str, verdict: Verdict | None, presented: str | None,
                     scope: str | None, website_id: str | None = None, data: str | None = None, ip: str | None = None,
                     user_agent: str | None = None, outcome: str | None = None, caller: str | None = None,
                     caller_ip: str | None = None, reason: str | None = None, at: datetime | None = None) -> None:
        """Queue the usage event of one verification or authenticated call (never the secret); with a durable
        usage sink (``KEYLEDGER_USAGE_DURABLE``), return once the event is safe, so that the request is
        answered only then."""
        key = verdict.key if verdict is not None else None
        granted = verdict.granted_by if verdict is not None else None
        settled = self._usage.emit(sanitized(UsageEvent(
            id=new_id(), at=at or self._clock(), action=action,
            outcome=outcome or (verdict.code if verdict is not None else "MISSING"),
            key_id=key.key_id if key else None,
            start=key.start if key else (attempted_start(presented, self._start_length, _well_formed(verdict))
                                         or None if presented else None),
            organization_id=key.organization_id if key else None, scope=scope,
            granted_by=granted.label() if granted else None,
            reason=reason or (verdict.reason if verdict is not None else "no key presented"),
            website_id=website_id, data=data, ip=ip, user_agent=user_agent, request_id=request_id(request),
            caller=caller, caller_ip=caller_ip), self._redaction))
        if settled is not None:
            await settled


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
