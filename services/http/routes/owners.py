"""``/v1/owners/{owner_id}``: owners in the customer's system (keys name one with ``owner_id``) and the rate
limit and credits shared by all their keys, on top of each key's own (needs ``admin:apikeys``).

Owners belong to an organization: an organization's admin key sets and sees only its organization's owners
(``organization_id`` naming another is 403); a global admin names the organization with ``?organization_id=``
(none: the owners of keys without an organization). Every change is recorded with who made it, from where
(``owner_events``), and reaches every API replica's verify within about half a second.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter, SkipValidation

from keyledger.domain.credits import check_credits, check_owner_id
from keyledger.domain.key import KeyState
from keyledger.domain.owners import OwnerLimits, check_owner_rate_limit
from keyledger.domain.recorded import Metadata
from keyledger.services.http.credit_schemas import CreditsSetting, Owner, OwnerRequest
from keyledger.services.http.errors import ApiError, error_responses, forbidden
from keyledger.services.http.guards import SECURITY, admin_guard
from keyledger.services.http.ports import KeyDirectory
from keyledger.services.keys.views import credits_view
from keyledger.services.storage.owners import OwnersTable
from keyledger.services.verify.credits import CreditLedger, balances
from keyledger.services.verify.owners import OwnerDirectory

OwnerId = Annotated[str, PathParameter(description="The owner's id in your system (1-200 of A-Z a-z 0-9 -_.:@+=)")]
Organization = Annotated[str | None, QueryParameter(max_length=500, description=(
    "The organization whose owner it is (a global admin key only; an organization's key uses its own)"))]


def _organization(admin: KeyState, asked: str | None) -> str:
    """The organization the call speaks of: the admin key's own, or (a global admin) the one asked."""
    own = admin.organization_id
    if own is not None:
        if asked not in (None, own):
            raise forbidden("an organization's admin key manages only that organization's owners")
        return own
    return asked or ""


async def _view(owner_id: str, organization: str, limits: OwnerLimits | None, cache: KeyDirectory,
                ledger: CreditLedger | None, now: datetime) -> Owner:
    keys = sorted(s.key_id for s in cache.states(organization or None)
                  if s.owner_id == owner_id and (s.organization_id or "") == organization)
    credits = None
    if limits is not None and limits.credits is not None:
        set_at = limits.credits_set_at or now
        shown = (await balances(ledger.pools, {limits.pool_id: (limits.credits_version, limits.credits, set_at)},
                                now, ledger))[limits.pool_id] if ledger is not None else None
        credits = credits_view(limits.credits, shown.remaining if shown else None, shown.refilled_at if shown else None)
    return msgspec.convert({
        "owner_id": owner_id, "organization_id": organization or None, "keys": keys, "credits": credits,
        "rate_limit": limits.rate_limit if limits else None, "version": limits.version if limits else 0,
        "updated_at": limits.updated_at if limits else None}, Owner)


def _tables(table: OwnersTable | None, owners: OwnerDirectory | None) -> tuple[OwnersTable, OwnerDirectory]:
    if table is None or owners is None:
        raise ApiError(503, "UNAVAILABLE", "owners are not kept by this server")
    return table, owners


@put("/v1/owners/{owner_id:str}", status_code=200, responses=error_responses(400, 401, 403, 413, 429, 503),
     guards=[admin_guard], security=SECURITY)
async def set_owner(owner_id: OwnerId, data: JSONBody[OwnerRequest], admin: NamedDependency[KeyState],
                    cache: NamedDependency[KeyDirectory], metadata: NamedDependency[Metadata],
                    now: NamedDependency[datetime],
                    owner_table: NamedDependency[SkipValidation[OwnersTable | None]],
                    owners: NamedDependency[SkipValidation[OwnerDirectory | None]],
                    credit_ledger: NamedDependency[SkipValidation[CreditLedger | None]],
                    organization_id: Organization = None) -> Owner:
    """Set the rate limit (requests per minute) and/or credits shared by all the owner's keys; a field left
    out is kept, ``null`` removes it. Every key naming this owner (``owner_id``) also spends from them."""
    check_owner_id(owner_id)
    organization = _organization(admin, organization_id)
    if isinstance(data.rate_limit, msgspec.UnsetType) and isinstance(data.credits, msgspec.UnsetType):
        raise ApiError(400, "VALIDATION_ERROR", "nothing to set: give rate_limit and/or credits")
    if not isinstance(data.rate_limit, msgspec.UnsetType):
        check_owner_rate_limit(data.rate_limit)
    credits = data.credits.domain() if isinstance(data.credits, CreditsSetting) else data.credits
    if credits is not None and not isinstance(credits, msgspec.UnsetType):
        check_credits(credits)
    table, directory = _tables(owner_table, owners)
    limits, _ = await table.set(organization, owner_id, rate_limit=data.rate_limit, credits=credits,
                                metadata=metadata)
    directory.note(limits)  # this replica at once; the others within their next refresh
    return await _view(owner_id, organization, limits, cache, credit_ledger, now)


@get("/v1/owners/{owner_id:str}", responses=error_responses(400, 401, 403, 404, 429, 503), guards=[admin_guard],
     security=SECURITY)
async def get_owner(owner_id: OwnerId, admin: NamedDependency[KeyState], cache: NamedDependency[KeyDirectory],
                    now: NamedDependency[datetime],
                    owner_table: NamedDependency[SkipValidation[OwnersTable | None]],
                    owners: NamedDependency[SkipValidation[OwnerDirectory | None]],
                    credit_ledger: NamedDependency[SkipValidation[CreditLedger | None]],
                    organization_id: Organization = None) -> Owner:
    """The owner's shared limits (``credits.remaining`` live) and its keys' ids; 404 for an owner that has
    neither limits nor keys in this organization."""
    check_owner_id(owner_id)
    organization = _organization(admin, organization_id)
    table, _ = _tables(owner_table, owners)
    limits = await table.get(organization, owner_id)
    view = await _view(owner_id, organization, limits, cache, credit_ledger, now)
    if limits is None and not view.keys:
        raise ApiError(404, "NOT_FOUND", f"owner {owner_id} not found")
    return view


OWNER_ROUTES = [set_owner, get_owner]
