"""The verify side of a process, built one way for an API process and for the in-process verifier: the
live key cache (confirmed with the store, following the bus), the replica roll, the verifier under the
staleness rule, the rate limiter, the forwarded-ip failure throttle, the last-used tracker and the usage
emitter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import msgspec

from keyledger.services.audit.emitter import UsageEmitter
from keyledger.services.bootstrap.background import Work, run_beside
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.cache.replicas import ReplicaRoll
from keyledger.services.clock import Clock, clock_from, epoch
from keyledger.services.config import Settings
from keyledger.services.hashing import Argon2Queue, SecretHasher
from keyledger.services.messaging.connection import Bus, connect
from keyledger.services.messaging.feed import EventFeed
from keyledger.services.messaging.replicas import ReplicaChannel
from keyledger.services.messaging.usage import UsagePublisher
from keyledger.services.storage.credit_pools import CreditPools
from keyledger.services.storage.database import Database, open_database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.key_cache_table import KeyCacheTable
from keyledger.services.storage.last_used_table import LastUsedTable
from keyledger.services.storage.owners import OwnersTable
from keyledger.services.storage.rate_windows import RateWindows
from keyledger.services.verify.credits import CreditLedger
from keyledger.services.verify.flow import staleness_rule
from keyledger.services.verify.last_used import LastUsedTracker
from keyledger.services.verify.owners import OwnerDirectory
from keyledger.services.verify.rate_limiter import RateLimiter
from keyledger.services.verify.rehash import Rehasher
from keyledger.services.verify.throttles import FailureThrottle
from keyledger.services.verify.verifier import Verifier


class OnConnect:
    """What a NATS connection runs when it (re)connects (:meth:`follow_again`)."""

    def __init__(self) -> None:
        self.cache: LiveKeyCache | None = None

    async def follow_again(self) -> None:
        """The key cache follows the stream again, from the message after the last it saw (nothing until the
        cache exists). A coroutine function, as nats-py requires of its callbacks."""
        if self.cache is not None:
            await self.cache.resubscribe()


class VerifySide(msgspec.Struct, kw_only=True):
    """What answers verify requests in one process, and what keeps it current."""

    settings: Settings
    clock: Clock
    bus: Bus
    cache: LiveKeyCache
    roll: ReplicaRoll  # the other replicas; commands wait until each holds their events
    queue: Argon2Queue  # bounds argon2 work: verify's cold checks (and an API process's create/rotate hashing)
    verifier: Verifier
    limiter: RateLimiter
    forwarded_failures: FailureThrottle  # failed attempts per end-client ip a caller forwards
    last_used: LastUsedTracker
    usage: UsageEmitter
    credits: CreditLedger  # this process's leases of usage credits (returned when it stops)
    owners: OwnerDirectory  # every owner's shared limits, followed from Postgres
    owner_table: OwnersTable  # where owners are set

    def background(self) -> list[Work]:
        """What runs beside the answers: last-used writes, rate-window leases, usage batches, the store
        poll and the replica announcements."""
        return [self.last_used.run, self.limiter.run, self.usage.run, self.cache.follow_store, self.roll.run,
                self.credits.run, self.owners.run]


def spool_dir(settings: Settings) -> Path:
    """Where undelivered usage events wait: ``KEYLEDGER_SPOOL_DIR``, else ``<data dir>/spool``."""
    return Path(settings.spool_dir) if settings.spool_dir else settings.data_path("spool")


async def open_verify_side(stack: AsyncExitStack, settings: Settings, *, db: Database, store: PostgresEventStore,
                           hasher: SecretHasher, clock: Clock, bus: Bus, on_connect: OnConnect,
                           spool: Path | None = None) -> VerifySide:
    """Load the key cache and confirm it with the store (current before the first answer), follow the bus
    (``on_connect`` resubscribes it from now on), join the replica roll and build what answers; the cache
    stops following when ``stack`` exits. The background work is the caller's to start
    (:meth:`VerifySide.background`, :func:`run_beside`)."""
    cache = LiveKeyCache(store, KeyCacheTable(db, store), EventFeed(bus, settings))
    await cache.start()
    await cache.catch_up_with_store()
    on_connect.cache = cache
    if bus.is_connected and not cache.following:  # NATS answered during the start, before on_connect knew the cache
        await cache.resubscribe()
    # every command waits until each replica's cache holds it: once it returns, no replica accepts what it took away
    roll = ReplicaRoll(ReplicaChannel(bus, settings.replicas_subject), lambda: cache.tailed,
                       max_wait=float(settings.max_staleness or 1))
    cache.on_advance, roll.on_nudge = roll.advanced, cache.nudge
    stack.push_async_callback(cache.stop)
    queue = Argon2Queue(settings.argon2_max_pending)
    verifier = Verifier(cache, hasher, settings.token_prefix, clock, queue=queue,
                        key_failure_limit=settings.key_failure_limit,
                        is_current=staleness_rule(cache, bus, settings.max_staleness), imported=cache.imported)
    rehasher = Rehasher(store, hasher, clock, queue, on_events=cache.apply_local)  # imported keys' first verifies
    verifier.on_rehash = rehasher
    stack.push_async_callback(rehasher.close)
    limiter, last_used = RateLimiter(RateWindows(db), clock=epoch(clock)), LastUsedTracker(LastUsedTable(db))
    usage = UsageEmitter(UsagePublisher(bus, settings), spool or spool_dir(settings), durable=settings.usage_durable,
                         max_inflight=settings.usage_inflight)
    forwarded = FailureThrottle(settings.auth_failure_limit, clock=epoch(clock))
    credits = CreditLedger(CreditPools(db), idle_seconds=settings.credit_lease_idle_seconds)
    owner_table = OwnersTable(db)
    owners = OwnerDirectory(owner_table)
    await owners.refresh()  # current before the first answer
    return VerifySide(settings=settings, clock=clock, bus=bus, cache=cache, roll=roll, queue=queue, verifier=verifier,
                      limiter=limiter, forwarded_failures=forwarded, last_used=last_used, usage=usage, credits=credits,
                      owners=owners, owner_table=owner_table)


@asynccontextmanager
async def open_local_verify_side(settings: Settings, *, name: str, spool: Path | None = None
                                 ) -> AsyncIterator[VerifySide]:
    """The verify side inside another Python process (the in-process verifier), on
    ``settings.database_url`` and ``settings.nats_url`` as they are: no embedded stack, no migrations (an
    API process runs beside it). NATS as the api role, named ``keyledger-<name>``; unreachable now is a
    ``BusError``. Its background work runs until the context exits, which flushes what is pending."""
    assert settings.database_url is not None and settings.nats_url is not None
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(open_database(settings.database_url, max_size=4))
        store, hasher, clock = PostgresEventStore(db), SecretHasher(settings), clock_from(settings.clock_start)
        stack.callback(hasher.close)
        on_connect = OnConnect()
        bus = await connect(settings.nats_url, f"keyledger-{name}", on_reconnect=on_connect.follow_again,
                            role="api")
        stack.push_async_callback(bus.close)
        side = await open_verify_side(stack, settings, db=db, store=store, hasher=hasher, clock=clock, bus=bus,
                                      on_connect=on_connect, spool=spool)
        run_beside(stack, side.background())
        yield side
