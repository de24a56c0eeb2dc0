"""What an API process runs: the components request handlers use, and the background work beside them."""

from __future__ import annotations

import asyncio
from collections.abc import Sized
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec

from keyledger.services.audit.emitter import UsageEmitter
from keyledger.services.audit.notary import AuditNotary, notary_for
from keyledger.services.bootstrap.background import Work
from keyledger.services.bootstrap.runtime import open_runtime
from keyledger.services.bootstrap.workers import start_roles
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.cache.replicas import ReplicaRoll
from keyledger.services.clock import Clock, epoch
from keyledger.services.config import Settings
from keyledger.services.hashing import Argon2Queue
from keyledger.services.http.ports import (
    AuditPages,
    CallerRegistry,
    Connectivity,
    HourlyUsage,
    KeyDirectory,
    LastUse,
    Limiter,
    SessionTable,
    UsageSink,
)
from keyledger.services.keys.service import KeyService
from keyledger.services.messaging.connection import connect_in_background
from keyledger.services.messaging.feed import EventFeed
from keyledger.services.messaging.replicas import ReplicaChannel
from keyledger.services.messaging.usage import UsagePublisher
from keyledger.services.observe.sampling import ApiGauges
from keyledger.services.parent import end_with_parent
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.audit_queries import AuditQueries
from keyledger.services.storage.dashboard_sessions import DashboardSessionTable
from keyledger.services.storage.database import open_database
from keyledger.services.storage.key_cache_table import KeyCacheTable
from keyledger.services.storage.last_used_table import LastUsedTable
from keyledger.services.storage.rate_windows import RateWindows
from keyledger.services.storage.usage_counts import UsageCounts
from keyledger.services.storage.verify_credentials import VerifyCredentials
from keyledger.services.verify.callers import VerifyCallers
from keyledger.services.verify.last_used import LastUsedTracker
from keyledger.services.verify.rate_limiter import RateLimiter
from keyledger.services.verify.throttles import FailureThrottle
from keyledger.services.verify.verifier import Verifier


class Components(msgspec.Struct, kw_only=True):
    """What request handlers use (published on ``app.state`` by ``deps.publish``). Typed by the
    ports the handlers need, so route tests can pass in-memory fakes (``create_app(components=...)``)."""

    settings: Settings
    clock: Clock
    keys: KeyService
    cache: KeyDirectory
    verifier: Verifier
    limiter: Limiter
    auth_failures: FailureThrottle
    last_used: LastUse
    usage: UsageSink
    audit: AuditPages
    export: ExportSource
    bus: Connectivity
    startup_head: int
    callers: CallerRegistry | None = None  # verify credentials (None: only the static token, admin keys or open)
    notary: AuditNotary  # signs export manifests, serves the public key, records each export's chain head
    usage_counts: HourlyUsage  # per-key hourly verification counts (the dashboard's charts)
    dashboard_sessions: SessionTable  # the dashboard's signed-in sessions (in Postgres: every API process's)
    gauges: ApiGauges | None = None  # samples this process's state for GET /metrics
    replicas: Sized = ()  # the other API replicas this one hears (ReplicaRoll)


async def start_components(stack: AsyncExitStack, cfg: Settings) -> Components:
    """Open the database and NATS, load and follow the key cache, start the background work
    (stopped, and everything closed, when ``stack`` exits)."""
    runtime = await stack.enter_async_context(open_runtime(cfg, pool_size=8))
    db, clock = runtime.db, runtime.clock
    # exports stream for as long as their client reads: they get a small pool of their own (at most
    # two at once; a third waits for one), so slow downloads never take the connections verify needs
    export_db = await stack.enter_async_context(open_database(runtime.database_url, max_size=2))
    cache_ref: list[LiveKeyCache] = []

    async def follow_again() -> None:
        for live in cache_ref:
            await live.resubscribe()

    # NATS may be away at start: the API starts anyway, from the store, and follows the bus once it answers
    bus, connecting = connect_in_background(runtime.endpoints.nats_url_for("api"), "keyledger-api", follow_again,
                                            role="api")
    stack.push_async_callback(bus.close)
    stack.callback(connecting.cancel)
    startup_head = await runtime.store.head_position()
    table = KeyCacheTable(db, runtime.store)
    cache = LiveKeyCache(runtime.store, table, EventFeed(bus, cfg))
    await cache.start()
    await cache.catch_up_with_store()  # confirmed current before the first request
    cache_ref.append(cache)
    if bus.is_connected and not cache.following:  # NATS answered during the start, before follow_again saw the cache
        await cache.resubscribe()
    # every command waits until each replica's cache holds it: once it returns, no replica accepts what it took away
    roll = ReplicaRoll(ReplicaChannel(bus, cfg.replicas_subject), lambda: cache.tailed,
                       max_wait=float(cfg.max_staleness or 1))
    cache.on_advance, roll.on_nudge = roll.advanced, cache.nudge
    stack.push_async_callback(cache.stop)
    last_used = LastUsedTracker(LastUsedTable(db))
    callers = VerifyCallers(VerifyCredentials(db))
    await callers.start()
    limiter = RateLimiter(RateWindows(db), clock=epoch(clock))
    spool = Path(cfg.spool_dir) if cfg.spool_dir else cfg.data_path("spool")
    usage = UsageEmitter(UsagePublisher(bus, cfg), spool, durable=cfg.usage_durable)
    stop = asyncio.Event()
    queue = Argon2Queue(cfg.argon2_max_pending)  # verify's cold checks and create/rotate hashing share it
    gauges = ApiGauges(cache=cache, queue=queue, usage=usage, bus=bus)
    workers: list[Work] = [last_used.run, limiter.run, usage.run, callers.run, cache.follow_store, gauges.run,
                           roll.run, end_with_parent]  # in a worker of `keyledger serve`: the process ends with serve
    if cfg.run_workers:  # each on a connection of its own, with only its role's permissions
        workers += await start_roles(stack, runtime)
    tasks = [asyncio.create_task(worker(stop)) for worker in workers]

    async def stop_workers() -> None:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    stack.push_async_callback(stop_workers)
    verifier = Verifier(cache, runtime.hasher, cfg.token_prefix, clock, queue=queue,
                        key_failure_limit=cfg.key_failure_limit,
                        is_current=lambda: cache.is_current(cfg.max_staleness, bus.is_connected))
    return Components(
        settings=cfg, clock=clock, cache=cache,
        keys=runtime.key_service(on_events=cache.apply_local, queue=queue, barrier=roll.wait_for),
        verifier=verifier, limiter=limiter, auth_failures=FailureThrottle(cfg.auth_failure_limit, clock=epoch(clock)),
        last_used=last_used, usage=usage, audit=AuditQueries(db), export=ExportSource(export_db), bus=bus,
        startup_head=startup_head, callers=callers, notary=notary_for(db, cfg), usage_counts=UsageCounts(db),
        dashboard_sessions=DashboardSessionTable(db), gauges=gauges, replicas=roll)
