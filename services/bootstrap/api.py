"""An API process: the verify side, the command handlers and what the audit trail and the dashboard read.
``create_app``'s lifespan opens it; the routes and the dashboard pages around it are ``http``'s."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import msgspec

from keyledger.services.audit.notary import AuditNotary, notary_for
from keyledger.services.bootstrap.background import Work, run_beside
from keyledger.services.bootstrap.runtime import open_runtime
from keyledger.services.bootstrap.verify_side import OnConnect, VerifySide, open_verify_side
from keyledger.services.bootstrap.webhooks import webhook_service
from keyledger.services.bootstrap.workers import start_roles
from keyledger.services.clock import epoch
from keyledger.services.config import Settings
from keyledger.services.keys.hygiene import HygieneReports, hygiene_rules
from keyledger.services.keys.service import KeyService
from keyledger.services.leaks.github import GitHubKeys
from keyledger.services.leaks.intake import LeakIntake
from keyledger.services.leaks.response import LeakResponse
from keyledger.services.messaging.connection import connect_in_background
from keyledger.services.observe.sampling import ApiGauges
from keyledger.services.parent import end_with_parent
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.audit_queries import AuditQueries
from keyledger.services.storage.dashboard_sessions import DashboardSessionTable
from keyledger.services.storage.database import open_database
from keyledger.services.storage.findings import FindingTable
from keyledger.services.storage.usage_grants import KeyUsage
from keyledger.services.storage.usage_series import UsageSeriesReader
from keyledger.services.storage.verify_credentials import VerifyCredentials
from keyledger.services.verify.callers import VerifyCallers
from keyledger.services.verify.throttles import FailureThrottle
from keyledger.services.webhooks.endpoints import WebhookService

API_POOL_SIZE = 8  # database connections of an API process (verify's leases, last-used, commands, reads)
EXPORT_POOL_SIZE = 2  # compliance exports at once; a further one waits for a connection

log = logging.getLogger("keyledger.api")


class Api(msgspec.Struct, kw_only=True):
    """What an API process serves with."""

    verify: VerifySide
    keys: KeyService  # the command handlers, under the replica barrier
    callers: VerifyCallers  # the verify credentials this process accepts
    auth_failures: FailureThrottle  # failed attempts per caller address (the guard's lockout)
    audit: AuditQueries
    export: ExportSource  # on a pool of its own
    notary: AuditNotary  # signs export manifests, serves the public key, records each export's chain head
    usage_counts: UsageSeriesReader  # usage time series (GET /v1/analytics/usage and the dashboard's charts)
    hygiene: HygieneReports  # the hygiene report (last uses, rotations, least-privilege suggestions)
    dashboard_sessions: DashboardSessionTable
    findings: FindingTable  # the watch's findings (the API lists and acknowledges them)
    webhooks: WebhookService  # webhook endpoints: register, list, delete, enable, deliveries
    leaks: LeakIntake  # reported leaks: GitHub's secret scanning, the public endpoint (checked beside the answers)
    gauges: ApiGauges  # samples this process's state for GET /metrics
    startup_head: int  # the store's head when the process started (readiness waits for the cache to reach it)


@asynccontextmanager
async def open_api(settings: Settings) -> AsyncIterator[Api]:
    """Open the database and NATS, load and follow the key cache, start the background work; when the
    context exits the work stops (flushing usage events and last-used times) and everything closes. With
    ``settings.run_workers`` the relay, the projector and the audit sink run in this process too."""
    async with AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(open_runtime(settings, pool_size=API_POOL_SIZE))
        db = runtime.db
        # exports stream for as long as their client reads: they get a small pool of their own, so slow
        # downloads never take the connections verify needs
        export_db = await stack.enter_async_context(open_database(runtime.database_url, max_size=EXPORT_POOL_SIZE))
        on_connect = OnConnect()
        # NATS may be away at start: the API starts anyway, from the store, and follows the bus once it answers
        bus, connecting = connect_in_background(runtime.endpoints.nats_url_for("api"), "keyledger-api",
                                                on_connect.follow_again, role="api")
        stack.push_async_callback(bus.close)
        stack.callback(connecting.cancel)
        startup_head = await runtime.store.head_position()
        side = await open_verify_side(stack, settings, db=db, store=runtime.store, hasher=runtime.hasher,
                                      clock=runtime.clock, bus=bus, on_connect=on_connect)
        callers = VerifyCallers(VerifyCredentials(db))
        await callers.start()
        gauges = ApiGauges(cache=side.cache, queue=side.queue, usage=side.usage, bus=bus)
        # in a worker of `keyledger serve`, the process ends with serve (end_with_parent)
        works: list[Work] = [*side.background(), callers.run, gauges.run, end_with_parent]
        if settings.run_workers:
            works += await start_roles(stack, runtime)
        run_beside(stack, works)
        # KEYLEDGER_BENCH_NO_BARRIER=1 is for bench/commands.py's baseline only: commands then return before the
        # other replicas hold their events (a revoked key may verify VALID elsewhere for a moment); never deploy it
        barrier = None if os.environ.get("KEYLEDGER_BENCH_NO_BARRIER") == "1" else side.roll.wait_for
        if barrier is None:
            log.warning("KEYLEDGER_BENCH_NO_BARRIER=1: commands return before the other replicas hold them (a "
                        "revoked key may verify VALID elsewhere for a moment); a benchmark setting, never deploy it")
        keys = runtime.key_service(on_events=side.cache.apply_local, queue=side.queue, barrier=barrier,
                                   current=side.cache.get)
        auth_failures = FailureThrottle(settings.auth_failure_limit, clock=epoch(runtime.clock))
        response = LeakResponse(keys, VerifyCredentials(db), runtime.clock, policy=settings.leak_policy,
                                callers=callers, findings=FindingTable(db))
        leaks = LeakIntake(keys, runtime.hasher, side.queue, VerifyCredentials(db), runtime.clock, response,
                           prefix=settings.token_prefix,
                           github=GitHubKeys(settings.leak_github_keys_file, settings.leak_github_keys_url),
                           reports_per_minute=settings.leak_reports_per_minute)
        run_beside(stack, [leaks.run])
        yield Api(verify=side, keys=keys, callers=callers, auth_failures=auth_failures, audit=AuditQueries(db),
                  export=ExportSource(export_db), notary=notary_for(db, settings), usage_counts=UsageSeriesReader(db),
                  dashboard_sessions=DashboardSessionTable(db), gauges=gauges, startup_head=startup_head,
                  findings=FindingTable(db),
                  webhooks=webhook_service(db, settings, runtime.clock),
                  hygiene=HygieneReports(KeyUsage(db), hygiene_rules(settings)), leaks=leaks)
