"""What request handlers use: the components of an API process (built by
:func:`keyledger.services.bootstrap.api.open_api`), typed by the ports the handlers need."""

from __future__ import annotations

from collections.abc import Sized

import msgspec

from keyledger.services.audit.notary import AuditNotary
from keyledger.services.bootstrap.api import Api
from keyledger.services.clock import Clock
from keyledger.services.config import Settings
from keyledger.services.http.ports import (
    AuditPages,
    CallerRegistry,
    Connectivity,
    KeyDirectory,
    LastUse,
    Limiter,
    SessionTable,
    UsageAnalytics,
    UsageSink,
)
from keyledger.services.keys.hygiene import HygieneReports
from keyledger.services.keys.service import KeyService
from keyledger.services.leaks.intake import LeakIntake
from keyledger.services.observe.sampling import ApiGauges
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.findings import FindingTable
from keyledger.services.storage.owners import OwnersTable
from keyledger.services.verify.credits import CreditLedger
from keyledger.services.verify.owners import OwnerDirectory
from keyledger.services.verify.throttles import FailureThrottle
from keyledger.services.verify.verifier import Verifier
from keyledger.services.webhooks.endpoints import WebhookService


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
    usage_counts: UsageAnalytics  # usage time series (GET /v1/analytics/usage and the dashboard's charts)
    dashboard_sessions: SessionTable  # the dashboard's signed-in sessions (in Postgres: every API process's)
    gauges: ApiGauges | None = None  # samples this process's state for GET /metrics
    replicas: Sized = ()  # the other API replicas this one hears (ReplicaRoll)
    findings: FindingTable | None = None  # the watch's findings (None: none, e.g. route tests without Postgres)
    hygiene: HygieneReports | None = None  # the hygiene report (None: none, e.g. route tests without Postgres)
    webhooks: WebhookService | None = None  # webhook endpoints (None: none, e.g. route tests without Postgres)
    leaks: LeakIntake | None = None  # reported leaks (None: none, e.g. route tests without Postgres)
    credits: CreditLedger | None = None  # usage credits leased here (None: not enforced, route tests only)
    owners: OwnerDirectory | None = None  # owners' shared limits held here (None: not enforced, route tests)
    owner_table: OwnersTable | None = None  # where owners are set (None: no owners, route tests)


def api_components(api: Api) -> Components:
    """The handlers' view of an API process."""
    side = api.verify
    return Components(
        settings=side.settings, clock=side.clock, keys=api.keys, cache=side.cache, verifier=side.verifier,
        limiter=side.limiter, auth_failures=api.auth_failures, last_used=side.last_used, usage=side.usage,
        audit=api.audit, export=api.export, bus=side.bus, startup_head=api.startup_head, callers=api.callers,
        notary=api.notary, usage_counts=api.usage_counts, dashboard_sessions=api.dashboard_sessions,
        gauges=api.gauges, replicas=side.roll, hygiene=api.hygiene, findings=api.findings,
        webhooks=api.webhooks, leaks=api.leaks, credits=side.credits,
        owners=side.owners, owner_table=side.owner_table)
