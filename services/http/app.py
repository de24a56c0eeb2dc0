"""``create_app(settings)``: the Litestar API, with every connection opened in its lifespan."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.openapi import OpenAPIConfig
from nats.aio.client import Client

from keyledger.services.messaging import bus
from keyledger.services.config import Settings, load_settings
from keyledger.services.http.errors import EXCEPTION_HANDLERS
from keyledger.services.clock import Clock, epoch
from keyledger.services.verify.last_used import LastUsedTracker
from keyledger.services.audit.sink import AuditSink
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.verify.throttles import FailureThrottle
from keyledger.services.verify.rate_limiter import RateLimiter
from keyledger.services.devstack.stack import default_data_dir
from keyledger.services.http.ratelimit_headers import ratelimit_headers
from keyledger.services.audit.emitter import UsageEmitter
from keyledger.services.cache.projector import Projector
from keyledger.services.messaging.relay import Relay
from keyledger.services.runtime import Runtime, open_runtime
from keyledger.services.verify.verifier import Verifier

MAX_BODY_BYTES = 64 * 1024


class Services(msgspec.Struct, kw_only=True):
    """What request handlers use; built in the lifespan, kept on ``app.state.services``."""

    settings: Settings
    runtime: Runtime
    nats: Client
    cache: LiveKeyCache
    verifier: Verifier
    last_used: LastUsedTracker
    limiter: RateLimiter
    auth_failures: FailureThrottle
    usage: UsageEmitter
    startup_head: int
    clock: Clock


def services_of(request: ASGIConnection[Any, Any, Any, Any]) -> Services:
    """The Services of the app serving ``request``."""
    services: Services = request.app.state.services
    return services


def create_app(settings: Settings | None = None) -> Litestar:
    """The keyledger HTTP API. Nothing connects until the app starts."""
    from keyledger.services.http.routes.audit import AUDIT_ROUTES
    from keyledger.services.http.routes.keys import KEY_ROUTES
    from keyledger.services.http.routes.health import HEALTH_ROUTES
    from keyledger.services.http.routes.verify import VERIFY_ROUTES

    cfg = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            runtime = await stack.enter_async_context(open_runtime(cfg, pool_size=8))
            cache_ref: list[LiveKeyCache] = []

            async def follow_again() -> None:
                for live in cache_ref:
                    await live.resubscribe()

            nc = await bus.connect(runtime.nats_url, "keyledger-api", reconnected_cb=follow_again)
            stack.push_async_callback(nc.close)
            js = nc.jetstream()
            startup_head = await runtime.store.head_position()
            cache = LiveKeyCache(runtime.pool, js, cfg)
            await cache.start()
            cache_ref.append(cache)
            stack.push_async_callback(cache.stop)
            runtime.keys.on_events = cache.apply_local
            last_used = LastUsedTracker(runtime.pool)
            clock = runtime.clock
            limiter = RateLimiter(runtime.pool, clock=epoch(clock))
            usage = UsageEmitter(nc, cfg, Path(cfg.spool_dir) if cfg.spool_dir else default_data_dir() / "spool")
            stop = asyncio.Event()
            workers = [last_used.run, limiter.run, usage.run]
            if cfg.run_workers:
                workers += [Relay(runtime.pool, js, cfg).run, Projector(runtime.pool, js, cfg).run,
                            AuditSink(runtime.pool, js, cfg).run]
            tasks = [asyncio.create_task(worker(stop)) for worker in workers]

            async def stop_workers() -> None:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)

            stack.push_async_callback(stop_workers)
            verifier = Verifier(cache, runtime.hasher, cfg.token_prefix, clock, max_pending=cfg.argon2_max_pending,
                                key_failure_limit=cfg.key_failure_limit)
            app.state.services = Services(
                settings=cfg, runtime=runtime, nats=nc, cache=cache, last_used=last_used, verifier=verifier,
                limiter=limiter, auth_failures=FailureThrottle(cfg.auth_failure_limit, clock=epoch(clock)), usage=usage,
                startup_head=startup_head, clock=clock)
            yield

    return Litestar(
        route_handlers=[*KEY_ROUTES, *VERIFY_ROUTES, *AUDIT_ROUTES, *HEALTH_ROUTES],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[ratelimit_headers],
        openapi_config=OpenAPIConfig(title="keyledger", version="0.1.0", path="/schema"),
    )


def app_from_env() -> Litestar:
    """App factory for ASGI servers (``granian --factory keyledger.services.http.app:app_from_env``)."""
    return create_app(load_settings())
