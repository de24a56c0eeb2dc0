"""Dependency injection: what route handlers get, by parameter name, instead of looking it up.

The lifespan builds the components and :func:`publish` puts them on ``app.state``; the providers
read them from there (``State``). Guards cannot take injected parameters, so they use
:func:`gate_of`. Nothing here (or anywhere) imports ``app.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.services.audit.notary import AuditNotary
from keyledger.services.http.auth import Gate, request_id, user_agent_of
from keyledger.services.http.components import Components
from keyledger.services.http.errors import ApiError
from keyledger.services.http.ports import AuditPages, Connectivity, KeyDirectory, LastUse
from keyledger.services.http.proxies import TrustedProxies
from keyledger.services.keys.hygiene import HygieneReports
from keyledger.services.keys.service import KeyService
from keyledger.services.leaks.intake import LeakIntake
from keyledger.services.storage.audit_export_source import ExportSource
from keyledger.services.storage.findings import FindingTable
from keyledger.services.storage.owners import OwnersTable
from keyledger.services.verify.credits import CreditLedger
from keyledger.services.verify.owners import OwnerDirectory
from keyledger.services.webhooks.endpoints import WebhookService

_STATE_KEY = "keyledger"
ADMIN = "admin"  # where a guard leaves the key it authenticated, in the request's state


class Published(msgspec.Struct, frozen=True, kw_only=True):
    """What ``app.state`` holds for the handlers: the components and the gate built on them."""

    components: Components
    gate: Gate


def published(components: Components) -> Published:
    """``components`` with the gate that authenticates callers through them."""
    c = components
    gate = Gate(verifier=c.verifier, limiter=c.limiter, auth_failures=c.auth_failures, last_used=c.last_used,
                usage=c.usage, clock=c.clock, rate_tiers=c.settings.rate_tiers(), verify_token=c.settings.verify_token,
                token_prefix=c.settings.token_prefix, callers=c.callers, verify_open=c.settings.verify_open,
                proxies=TrustedProxies(c.settings.trusted_proxies), credits=c.credits,
                owners=c.owners)
    return Published(components=components, gate=gate)


def publish(state: State, components: Components) -> None:
    """Make ``components`` what the handlers of the app owning ``state`` get."""
    state[_STATE_KEY] = published(components)


def initial_state(components: Components) -> State:
    """An app state that already holds ``components`` (an app given its components up front)."""
    return State({_STATE_KEY: published(components)})


def _published(state: State) -> Published:
    found: Published = state[_STATE_KEY]
    return found


def components_of(state: State) -> Components:
    """The components published on ``state`` (for tools that drive an app directly, e.g. benchmarks)."""
    return _published(state).components


def gate_in(state: State) -> Gate | None:
    """The gate published on ``state``, None until the app's components are published."""
    found: Published | None = state.get(_STATE_KEY)
    return found.gate if found is not None else None


def gate_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Gate:
    """The gate of the app serving ``connection`` (for guards)."""
    return _published(connection.app.state).gate


def provide_gate(request: Request[Any, Any, Any]) -> Gate:
    """Authenticates callers and answers verify requests. Read through the request, not ``State``:
    this is the verify hot path, and Litestar builds a ``State`` object for every ``state`` parameter."""
    return _published(request.app.state).gate


def provide_keys(state: State) -> KeyService:
    """The command handlers (create, change, rotate, revoke)."""
    return _published(state).components.keys


def provide_cache(state: State) -> KeyDirectory:
    """Every key's current state."""
    return _published(state).components.cache


def provide_last_used(state: State) -> LastUse:
    """When keys were last used."""
    return _published(state).components.last_used


def provide_credit_ledger(state: State) -> CreditLedger | None:
    """This process's credit leases, and the balances the key views read through it (None: not shown live,
    e.g. route tests without Postgres)."""
    return _published(state).components.credits


def provide_owner_table(state: State) -> OwnersTable | None:
    """Where owners are set (None: no owners here, e.g. route tests without Postgres)."""
    return _published(state).components.owner_table


def provide_owners(state: State) -> OwnerDirectory | None:
    """The owners' shared limits this process holds (None: none, e.g. route tests without Postgres)."""
    return _published(state).components.owners


def provide_audit(state: State) -> AuditPages:
    """Pages of the audit trail."""
    return _published(state).components.audit


def provide_hygiene(state: State) -> HygieneReports:
    """The hygiene report (503 in a process built without one)."""
    found = _published(state).components.hygiene
    if found is None:
        raise ApiError(503, "UNAVAILABLE", "this process has no hygiene report")
    return found


def provide_webhooks(state: State) -> WebhookService:
    """Webhook endpoints (503 in a process built without them)."""
    found = _published(state).components.webhooks
    if found is None:
        raise ApiError(503, "UNAVAILABLE", "this process has no webhook endpoints")
    return found


def provide_findings(state: State) -> FindingTable:
    """The watch's findings (503 in a process built without them)."""
    found = _published(state).components.findings
    if found is None:
        raise ApiError(503, "UNAVAILABLE", "this process has no findings")
    return found


def provide_leaks(state: State) -> LeakIntake:
    """The leak intake (503 in a process built without one)."""
    found = _published(state).components.leaks
    if found is None:
        raise ApiError(503, "UNAVAILABLE", "this process takes no leak reports")
    return found


def provide_export(state: State) -> ExportSource:
    """The rows of a compliance export."""
    return _published(state).components.export


def provide_notary(state: State) -> AuditNotary:
    """The audit export's signing key, public keys and chain-head record."""
    return _published(state).components.notary


def provide_bus(state: State) -> Connectivity:
    """The message bus connection."""
    return _published(state).components.bus


def provide_replicas(state: State) -> Sized:
    """The other API replicas this one hears (commands wait until each holds their events)."""
    return _published(state).components.replicas


def provide_startup_head(state: State) -> int:
    """The store's head position when the process started (readiness waits for the cache to reach it)."""
    return _published(state).components.startup_head


def provide_now(state: State) -> datetime:
    """The time of this request, by the process clock."""
    return _published(state).components.clock()


def provide_admin(request: Request[Any, Any, Any]) -> KeyState:
    """The key the route's guard authenticated."""
    admin: KeyState = request.state[ADMIN]
    return admin


def provide_metadata(request: Request[Any, Any, Any], admin: NamedDependency[KeyState]) -> Metadata:
    """Who does it (the acting key), from where (the client's address, through trusted proxies; user agent),
    and the request id: kept with the events."""
    return Metadata(actor=f"key:{admin.key_id}", ip=_published(request.app.state).gate.address_of(request),
                    user_agent=user_agent_of(request), request_id=request_id(request))


def dependencies() -> dict[str, Provide]:
    """Every provider, by the parameter name handlers use (registered on the app)."""
    providers: dict[str, Callable[..., Any]] = {
        "gate": provide_gate, "keys": provide_keys, "cache": provide_cache, "last_used": provide_last_used,
        "credit_ledger": provide_credit_ledger, "owner_table": provide_owner_table, "owners": provide_owners,
        "audit": provide_audit, "export": provide_export, "bus": provide_bus, "startup_head": provide_startup_head,
        "replicas": provide_replicas, "hygiene": provide_hygiene, "webhooks": provide_webhooks,
        "findings": provide_findings,
        "leaks": provide_leaks,
        "notary": provide_notary, "now": provide_now, "admin": provide_admin, "metadata": provide_metadata,
    }
    return {name: Provide(provider, sync_to_thread=False) for name, provider in providers.items()}
