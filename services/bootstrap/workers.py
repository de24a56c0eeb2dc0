"""The relay, the projector, the audit sink and the webhooks, each built on a runtime and (all but the webhooks,
which need Postgres only) a NATS connection of its own, as its role's NATS user (only that role's permissions)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

import msgspec

from keyledger.services.audit.sink import AuditSink
from keyledger.services.bootstrap.background import Work
from keyledger.services.bootstrap.roles import PROJECTOR, RELAY, ROLES, SINK, WATCH, WEBHOOKS, Role
from keyledger.services.bootstrap.runtime import Runtime, open_runtime
from keyledger.services.bootstrap.watch import watch_worker
from keyledger.services.bootstrap.webhooks import webhooks_worker
from keyledger.services.cache.projector import Projector
from keyledger.services.cache.relay import Relay
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus, connect, connect_until
from keyledger.services.messaging.events import event_consumer
from keyledger.services.messaging.usage import usage_consumer
from keyledger.services.storage.checkpoints import Checkpoints
from keyledger.services.storage.key_cache_table import KeyCacheTable
from keyledger.services.storage.usage_table import UsageTable
from keyledger.services.watch.watcher import Watch
from keyledger.services.webhooks.worker import WebhooksWorker

Worker = Relay | Projector | AuditSink | WebhooksWorker | Watch


def build_worker(role: Role, rt: Runtime, bus: Bus | None) -> Worker:
    """The worker of ``role`` on ``rt``'s database and ``bus`` (connected as ``role.nats_user``; None for a role
    without NATS)."""
    if role == WEBHOOKS:
        return webhooks_worker(rt)
    assert bus is not None, role
    if role == RELAY:
        return Relay(rt.db, rt.store, Checkpoints(rt.db), bus, rt.settings)
    if role == WATCH:
        return watch_worker(rt, bus)
    if role == PROJECTOR:
        return Projector(KeyCacheTable(rt.db, rt.store), event_consumer(bus, rt.settings, role.consumer, role.batch))
    assert role == SINK, role
    return AuditSink(UsageTable(rt.db), usage_consumer(bus, rt.settings, role.consumer, role.batch))


def _nats(rt: Runtime, role: Role) -> tuple[str, str]:
    """The NATS URL of ``role``'s user, and the connection's name."""
    return rt.endpoints.nats_url_for(role.nats_user), f"keyledger-{role.command}"


async def start_roles(stack: AsyncExitStack, rt: Runtime, roles: Iterable[Role] = ROLES.values()) -> list[Work]:
    """Connect each of ``roles`` (each connection closes when ``stack`` exits) and build its worker; returns
    what to run (beside an API process's own work: ``KEYLEDGER_RUN_WORKERS``)."""
    buses: list[tuple[Role, Bus | None]] = []
    for role in roles:
        if not role.nats_user:
            buses.append((role, None))
            continue
        url, name = _nats(rt, role)
        bus = await connect(url, name, role=role.nats_user)
        stack.push_async_callback(bus.close)
        buses.append((role, bus))
    return [build_worker(role, rt, bus).run for role, bus in buses]


class RoleProcess(msgspec.Struct, frozen=True, kw_only=True):
    """What a ``keyledger <role>`` process runs."""

    role: Role
    runtime: Runtime
    bus: Bus | None  # None: a role without NATS
    worker: Worker


@asynccontextmanager
async def open_role(role: Role, settings: Settings, stop: asyncio.Event) -> AsyncIterator[RoleProcess | None]:
    """A worker process's parts: the runtime, a NATS connection (retried while NATS is unreachable; none for a
    role without NATS) and the worker of ``role``; None when ``stop`` was set before NATS answered. The
    connection closes on exit."""
    async with open_runtime(settings, pool_size=8 if role == WEBHOOKS else 4) as rt:
        if not role.nats_user:
            yield RoleProcess(role=role, runtime=rt, bus=None, worker=build_worker(role, rt, None))
            return
        url, name = _nats(rt, role)
        bus = await connect_until(url, name, stop, role=role.nats_user)
        if bus is None:
            yield None
            return
        try:
            yield RoleProcess(role=role, runtime=rt, bus=bus, worker=build_worker(role, rt, bus))
        finally:
            await bus.close()
