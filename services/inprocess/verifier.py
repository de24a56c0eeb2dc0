"""``InProcessVerifier``: the API's own verify path (live key cache, verifier, rate limiter, usage events)
started inside another Python process, for services that cannot afford a network hop per request."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

import msgspec

from keyledger.domain import token
from keyledger.domain.access import DATA_KINDS, SCOPES
from keyledger.domain.errors import ValidationError
from keyledger.domain.rate import limit_of
from keyledger.domain.redaction import redaction_for
from keyledger.domain.usage import FIELD_LIMITS, UsageEvent, attempted_start, clean_text, sanitized, storable
from keyledger.services.bootstrap.verify_side import open_local_verify_side
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.config import Settings, load_settings
from keyledger.services.http.auth import new_id
from keyledger.services.http.routes.verify import answer
from keyledger.services.http.schemas import VerifyAnswer
from keyledger.services.verify.throttles import RateDecision
from keyledger.services.verify.verifier import Verdict


class InProcessVerifier:
    """Verifies keys in this process exactly as an API replica does, with the same answers and codes as
    ``POST /v1/verify`` (:class:`VerifyAnswer`).

    It needs the servers an API replica needs for verifying: NATS (it follows the key event stream with the
    API's :class:`LiveKeyCache` and publishes usage events to the usage stream) and Postgres (the live cache
    loads ``key_cache`` and reads the event store; the rate limiter leases budget in ``rate_windows``;
    last-used times are written). It sees a revocation within the same bound as an API replica, and once
    the store has not confirmed its cache for ``KEYLEDGER_MAX_STALENESS`` seconds it answers ``UNAVAILABLE``
    instead of ``VALID``, unless, as an API replica, it is serving through a store outage with the bus
    connected. argon2 work is bounded the same way (``KEYLEDGER_ARGON2_*``). Use it as ``async
    with InProcessVerifier(nats_url=..., database_url=...) as verifier: await verifier.verify(...)``.
    """

    def __init__(self, *, nats_url: str, database_url: str, settings: Settings | None = None,
                 name: str = "in-process", spool_dir: Path | None = None) -> None:
        base = settings or load_settings()
        self.settings = msgspec.structs.replace(base, nats_url=nats_url, database_url=database_url)
        self.name, self._spool, self._caller = name, spool_dir, f"in-process:{name}"
        self._start_length, self._tiers = token.start_length(self.settings.token_prefix), self.settings.rate_tiers()
        self._redaction = redaction_for(self.settings.token_prefix)  # what usage events' text is redacted under
        self._stack: AsyncExitStack | None = None
        self._cache: LiveKeyCache | None = None

    async def __aenter__(self) -> InProcessVerifier:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def cache(self) -> LiveKeyCache:
        """The live key cache (``position``, ``lag()``: how far it has got)."""
        assert self._cache is not None, "start() first"
        return self._cache

    async def start(self) -> None:
        """Connect, load the key cache, confirm it with the store and start the background work: the verify
        side an API process has (:func:`~keyledger.services.bootstrap.verify_side.open_local_verify_side`)."""
        stack = AsyncExitStack()
        side = await stack.enter_async_context(open_local_verify_side(self.settings, name=self.name,
                                                                      spool=self._spool))
        self._cache, self._clock, self._stack = side.cache, side.clock, stack
        self._verifier, self._limiter, self._forwarded = side.verifier, side.limiter, side.forwarded_failures
        self._last_used, self._usage = side.last_used, side.usage

    async def stop(self) -> None:
        """Flush what is pending (usage events, last-used times) and disconnect."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def verify(self, key: str, scope: str, *, website_id: str | None = None, data: str | None = None,
                     ip: str | None = None, user_agent: str | None = None) -> VerifyAnswer:
        """The answer ``POST /v1/verify`` would give (``valid``, ``code``, ``reason``, the key, ``ratelimit``),
        with its usage event (caller ``in-process:<name>``). An unknown ``scope`` or ``data`` kind raises
        :class:`ValidationError` (the endpoint's 400)."""
        if scope not in SCOPES:
            raise ValidationError(f"unknown scope {scope!r}")
        if data is not None and data not in DATA_KINDS:
            raise ValidationError(f"unknown data kind {data!r}")
        decision: RateDecision | None = None
        now = self._clock()
        if ip and self._forwarded.refusal(ip) is not None:  # as the API's gate decides, step by step
            verdict = Verdict(valid=False, code="RATE_LIMITED", reason="too many failed attempts from this client ip")
        else:
            verdict = await self._verifier.verify(key, scope, website_id, data,
                                                  source=f"ip:{ip}" if ip else self.name, caller=self.name, now=now)
            if ip and verdict.code in ("MALFORMED", "NOT_FOUND"):
                self._forwarded.record(ip)
            found = verdict.key
            if found is not None and verdict.code in ("VALID", "FORBIDDEN"):
                decision = await self._limiter.hit(found.key_id, limit_of(found, self._tiers))
                if not decision.allowed:
                    verdict = Verdict(valid=False, code="RATE_LIMITED", reason="rate limit exceeded", key=found)
        known, granted = verdict.key, verdict.granted_by
        event = UsageEvent(
            id=new_id(), at=now, action="verify", outcome=verdict.code, key_id=known.key_id if known else None,
            start=known.start if known else attempted_start(key, self._start_length, verdict.code != "MALFORMED")
            or None,
            organization_id=known.organization_id if known else None, scope=scope,
            granted_by=granted.label() if granted else None,
            reason=clean_text(verdict.reason, FIELD_LIMITS["reason"], self._redaction),
            website_id=storable(website_id, "website_id", self._redaction), data=data,
            ip=storable(ip, "ip", self._redaction), user_agent=storable(user_agent, "user_agent", self._redaction),
            caller=self._caller)
        # a known key's fields come from the cache, scope and data were checked: only the caller's own text (and
        # the reason, which may quote the website asked for) needed cleaning and redacting; an unknown key's event
        # may carry what the caller typed as a key
        settled = self._usage.emit(event if known is not None else sanitized(event, self._redaction))
        if settled is not None:  # KEYLEDGER_USAGE_DURABLE: answer once the event is safe
            await settled
        if verdict.valid and known is not None:
            self._last_used.touch(known.key_id, now)
        return answer(verdict, decision)
