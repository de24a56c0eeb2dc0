"""``InProcessVerifier``: the API's own verify path (live key cache, verifier, rate limiter, usage events)
started inside another Python process, for services that cannot afford a network hop per request."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

import msgspec

from keyledger.services.bootstrap.verify_side import open_local_verify_side
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.config import Settings, load_settings
from keyledger.services.verify.answer import VerifyAnswer, answer
from keyledger.services.verify.call import verify_call
from keyledger.services.verify.flow import VerifyFlow


class InProcessVerifier:
    """Verifies keys in this process exactly as an API replica does — through the same verify flow
    (:class:`~keyledger.services.verify.flow.VerifyFlow`) — with the same answers and codes as
    ``POST /v1/verify`` (:class:`VerifyAnswer`).

    It needs the servers an API replica needs for verifying: NATS (it follows the key event stream with the
    API's :class:`LiveKeyCache` and publishes usage events to the usage stream) and Postgres (the live cache
    loads ``key_cache`` and reads the event store; the rate limiter leases budget in ``rate_windows``;
    last-used times are written). It sees a revocation within the same bound as an API replica, and once
    the store has not confirmed its cache for ``KEYLEDGER_MAX_STALENESS`` seconds it answers ``UNAVAILABLE``
    instead of ``VALID``, unless, as an API replica, it is serving through a store outage with the bus
    connected (:func:`~keyledger.services.verify.flow.staleness_rule`). argon2 work is bounded the same way
    (``KEYLEDGER_ARGON2_*``). Use it as ``async with InProcessVerifier(nats_url=..., database_url=...) as
    verifier: await verifier.verify(...)``.
    """

    def __init__(self, *, nats_url: str, database_url: str, settings: Settings | None = None,
                 name: str = "in-process", spool_dir: Path | None = None) -> None:
        base = settings or load_settings()
        self.settings = msgspec.structs.replace(base, nats_url=nats_url, database_url=database_url)
        self.name, self._spool, self._caller = name, spool_dir, f"in-process:{name}"
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
        self._flow = VerifyFlow(verifier=side.verifier, limiter=side.limiter, last_used=side.last_used,
                                usage=side.usage, clock=side.clock, rate_tiers=self.settings.rate_tiers(),
                                forwarded_failures=side.forwarded_failures, token_prefix=self.settings.token_prefix)

    async def stop(self) -> None:
        """Flush what is pending (usage events, last-used times) and disconnect."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def verify(self, key: str, scope: str, *, website_id: str | None = None, data: str | None = None,
                     ip: str | None = None, user_agent: str | None = None) -> VerifyAnswer:
        """The answer ``POST /v1/verify`` would give (``valid``, ``code``, ``reason``, the key, ``ratelimit``),
        with its usage event (caller ``in-process:<name>``). An unknown ``scope`` or ``data`` kind (or a
        ``website_id`` longer than any grant's) raises :class:`~keyledger.domain.errors.ValidationError` (the
        endpoint's 400)."""
        call = verify_call(key=key, scope=scope, at=self._clock(), website_id=website_id, data=data, ip=ip,
                           user_agent=user_agent, caller=self._caller)
        verified = await self._flow.verify(call)
        return answer(verified.verdict, verified.rate)
