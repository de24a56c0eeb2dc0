"""``/v1/reports``: the hygiene report (needs ``admin:apikeys``). An organization's admin sees only its
organization's keys; a global admin sees every key, or one organization's with ``organization_id``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import QueryParameter

from keyledger.domain.key import KeyState
from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.guards import SECURITY, admin_guard
from keyledger.services.http.ports import KeyDirectory
from keyledger.services.keys.hygiene import HygieneReports
from keyledger.services.keys.hygiene_views import HygieneReport

Organization = Annotated[str | None, QueryParameter(pattern=r"^[^\x00]*$", max_length=200, description=(
    "Only this organization's keys (an organization's admin: its own, which is also the default)"))]


def organization_of(admin: KeyState, asked: str | None) -> str | None:
    """Whose keys ``admin`` asks about: an organization's admin only its own (403 for another's)."""
    own = admin.organization_id
    if own is not None and asked not in (None, own):
        raise ApiError(403, "FORBIDDEN", "an organization's admin key sees only its own organization's keys")
    return own or asked


def keys_of(cache: KeyDirectory, organization: str | None) -> list[KeyState]:
    """Every key of ``organization`` (None: every key)."""
    return cache.states(organization)


@get("/v1/reports/hygiene", guards=[admin_guard], security=SECURITY,
     responses={200: ResponseSpec(data_container=HygieneReport, description="The report", generate_examples=False),
                **error_responses(400, 401, 403, 429, 503)})
async def hygiene_report(admin: NamedDependency[KeyState], cache: NamedDependency[KeyDirectory],
                         hygiene: NamedDependency[HygieneReports], now: NamedDependency[datetime],
                         organization_id: Organization = None) -> Response[bytes]:
    """Every active key with ``last_used_at``, ``age_days``, ``last_rotated_at``, ``expires_at`` and its
    ``issues`` (``unused``, ``not_rotated``, ``expiring``, ``no_expiry``, ``overprivileged``); an overprivileged
    key's ``suggestion.patch`` is a ``PATCH /v1/keys/{id}`` body that narrows it to what its uses of the last
    ``rules.unused_days`` days needed (send it with ``If-Match: <version>``)."""
    organization = organization_of(admin, organization_id)
    report = await hygiene.report(keys_of(cache, organization), now, organization, cache.position)
    return Response(hygiene.encode(report), media_type=MediaType.JSON)  # items' JSON remembered: 10k keys


REPORT_ROUTES = [hygiene_report]
