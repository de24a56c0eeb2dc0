"""What the dashboard's handlers get by parameter name, beside the API's own providers
(``services.http.deps``): its sessions and the hourly usage counts of its charts. Registered on the
dashboard's router. Its guard cannot take injected parameters, so it uses :func:`sessions_of`.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide

from keyledger.services.http.dashboard.sessions import Sessions
from keyledger.services.http.deps import components_of
from keyledger.services.http.ports import HourlyUsage
from keyledger.services.storage.findings import FindingTable


def _sessions(state: State) -> Sessions:
    components = components_of(state)
    return Sessions(components.dashboard_sessions, components.clock)


def sessions_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Sessions:
    """The sessions of the app serving ``connection`` (for the guard)."""
    return _sessions(connection.app.state)


def provide_sessions(state: State) -> Sessions:
    """Sign-in, lookup and sign-out of the dashboard's sessions (kept in Postgres, shared by every API
    process), on the process clock."""
    return _sessions(state)


def provide_usage_counts(state: State) -> HourlyUsage:
    """Verifications per key, hour and outcome (the charts)."""
    return components_of(state).usage_counts


def provide_finding_table(state: State) -> FindingTable | None:
    """The watch's findings, for a key's detail view (None in an app built without them: no findings shown)."""
    return components_of(state).findings


def dependencies() -> dict[str, Provide]:
    """The dashboard's providers, by the parameter name its handlers use."""
    return {"sessions": Provide(provide_sessions, sync_to_thread=False),
            "usage_counts": Provide(provide_usage_counts, sync_to_thread=False),
            "finding_table": Provide(provide_finding_table, sync_to_thread=False)}
