"""``/v1/keys``: create, list, get, change access, rotate and revoke (needs ``admin:apikeys``).

An admin key that belongs to an organization sees and manages only that organization's keys.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from datetime import datetime
from itertools import islice
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Response, get, patch, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter, SkipValidation

from keyledger.domain.access import AccessEntry
from keyledger.domain.credits import Credits
from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.domain.token import is_key_id
from keyledger.services.http.credit_views import live_credits
from keyledger.services.http.errors import ApiError, error_responses, forbidden
from keyledger.services.http.guards import SECURITY, admin_guard
from keyledger.services.http.ports import KeyDirectory, LastUse
from keyledger.services.http.schemas import (
    Access,
    ChangeKeyRequest,
    CreateKeyRequest,
    CreditsSetting,
    Key,
    KeyPage,
    KeyWithLastUse,
    KeyWithSecret,
    RevokeKeyRequest,
    RotateKeyRequest,
)
from keyledger.services.http.telemetry import timed
from keyledger.services.keys.service import KeyService
from keyledger.services.keys.views import join_access, key_view
from keyledger.services.observe.logs import annotate
from keyledger.services.verify.credits import CreditLedger

KeyId = Annotated[str, PathParameter(description="The key id (12 characters)")]
IfMatch = Annotated[str | None, HeaderParameter(name="If-Match", description='The key version you last saw, e.g. "3"; '
                                          "a stale one is refused with 409")]
ETAG = [ResponseHeader(name="ETag", description="The key's version", documentation_only=True)]
K = TypeVar("K", bound=Key)


def _entries(scopes: list[str] | None, access: list[Access] | None) -> tuple[AccessEntry, ...]:
    """The key's access entries: top-level scopes are global grants (validated by the domain)."""
    return join_access(scopes or [], [AccessEntry(resource=a.resource, id=a.id, scopes=tuple(a.scopes))
                                      for a in access or []])


def _tagged(body: K, state: KeyState, status: int = 200) -> Response[K]:
    annotate(key_id=state.key_id, start=state.start)  # the request's log lines name the key (never its secret)
    return Response(body, status_code=status, headers={"ETag": f'"{state.version}"'})


def _expected_version(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ApiError(400, "VALIDATION_ERROR", "If-Match must be a key version (the ETag), e.g. \"3\"")
    return int(value)


def visible_key(cache: KeyDirectory, admin: KeyState, key_id: str) -> KeyState:
    """The key ``admin`` may see and manage (an organization's admin: only its organization's); else 404."""
    state = cache.get(key_id) if is_key_id(key_id) else None
    if state is None or (admin.organization_id is not None and state.organization_id != admin.organization_id):
        raise ApiError(404, "NOT_FOUND", f"key {key_id} not found")
    return state


def _credits_change(given: CreditsSetting | None | msgspec.UnsetType) -> Credits | None | msgspec.UnsetType:
    """PATCH's ``credits``: absent (UNSET) unchanged, null removed, else the new setting."""
    return given.domain() if isinstance(given, CreditsSetting) else given


def _view(state: KeyState, now: datetime, **extra: Any) -> dict[str, Any]:
    return {**key_view(state, now), **extra}


@post("/v1/keys", status_code=201, middleware=[timed("create")], response_headers=ETAG,
      responses=error_responses(400, 401, 403, 409, 413, 429, 503),
      guards=[admin_guard], security=SECURITY)
async def create_key(data: JSONBody[CreateKeyRequest], keys: NamedDependency[KeyService],
                     admin: NamedDependency[KeyState],
                     metadata: NamedDependency[Metadata], now: NamedDependency[datetime]) -> Response[KeyWithSecret]:
    """Create a key; the response is the only place its secret ever appears."""
    organization = data.organization_id
    if admin.organization_id is not None:
        if organization not in (None, admin.organization_id):
            raise forbidden("an organization's admin key can only create keys of that organization")
        organization = admin.organization_id
    issued = await keys.create(data.name, organization_id=organization, access=_entries(data.scopes, data.access),
                               expires_at=data.expires_at, rate_limit=data.rate_limit, metadata=metadata,
                               grantor=admin, description=data.description, tags=data.tags,
                               allowed_networks=data.allowed_networks,
                               credits=data.credits.domain() if data.credits is not None else None,
                               owner_id=data.owner_id)
    body = msgspec.convert(_view(issued.state, now, secret=issued.token), KeyWithSecret)
    return _tagged(body, issued.state, 201)


@get("/v1/keys", responses=error_responses(400, 401, 403, 429, 503), guards=[admin_guard], security=SECURITY)
async def list_keys(admin: NamedDependency[KeyState], cache: NamedDependency[KeyDirectory],
                    last_used: NamedDependency[LastUse], now: NamedDependency[datetime],
                    credit_ledger: NamedDependency[SkipValidation[CreditLedger | None]],
                    cursor: Annotated[str | None, QueryParameter()] = None,
                    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
                    owner_id: Annotated[str | None, QueryParameter(max_length=200)] = None) -> KeyPage:
    """Keys ordered by id, ``limit`` (1-100) at a time; ``next_cursor`` continues; ``owner_id``: only that
    owner's keys. Never secrets. Only the page's keys are read (with an ``owner_id``, the organization's keys
    until the page is full): a page costs the same with a thousand keys or a million."""
    page = _page(cache, admin.organization_id, cursor, limit + 1,
                 None if owner_id is None else (lambda s: s.owner_id == owner_id))
    more, page = len(page) > limit, page[:limit]
    used = await last_used.lookup(s.key_id for s in page)
    credits = await live_credits(credit_ledger, page, now)
    items = msgspec.convert([_view(s, now, last_used_at=used.get(s.key_id), credits=credits.get(s.key_id))
                             for s in page], list[KeyWithLastUse])
    return KeyPage(items=items, next_cursor=page[-1].key_id if more else None)


def _page(cache: KeyDirectory, organization_id: str | None, after: str | None, size: int,
          keep: Callable[[KeyState], bool] | None) -> list[KeyState]:
    """Up to ``size`` states of the organization's keys (None: every key) in id order after ``after``, those
    that ``keep`` accepts."""
    ids, found = cache.sorted_ids(organization_id), []
    for key_id in islice(ids, 0 if after is None else bisect_right(ids, after), None):
        state = cache.peek(key_id)
        if state is not None and (keep is None or keep(state)):
            found.append(state)
            if len(found) == size:
                break
    return found


@get("/v1/keys/{key_id:str}", response_headers=ETAG, responses=error_responses(400, 401, 403, 404, 429, 503),
     guards=[admin_guard], security=SECURITY)
async def get_key(key_id: KeyId, admin: NamedDependency[KeyState], cache: NamedDependency[KeyDirectory],
                  last_used: NamedDependency[LastUse], now: NamedDependency[datetime],
                  credit_ledger: NamedDependency[SkipValidation[CreditLedger | None]]) -> Response[KeyWithLastUse]:
    """One key, with its status, last use and credits left."""
    state = visible_key(cache, admin, key_id)
    used = await last_used.lookup([key_id])
    credits = await live_credits(credit_ledger, [state], now)
    return _tagged(msgspec.convert(_view(state, now, last_used_at=used.get(key_id), credits=credits.get(key_id)),
                                   KeyWithLastUse), state)


@patch("/v1/keys/{key_id:str}", middleware=[timed("change")], response_headers=ETAG,
       responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503), guards=[admin_guard], security=SECURITY)
async def change_key(key_id: KeyId, data: JSONBody[ChangeKeyRequest], keys: NamedDependency[KeyService],
                     cache: NamedDependency[KeyDirectory], admin: NamedDependency[KeyState],
                     metadata: NamedDependency[Metadata], now: NamedDependency[datetime],
                     credit_ledger: NamedDependency[SkipValidation[CreditLedger | None]],
                     if_match: IfMatch = None) -> Response[Key]:
    """Rename, describe, tag and/or replace scopes and access; ``If-Match`` guards against lost updates."""
    visible_key(cache, admin, key_id)
    access = None if data.scopes is None and data.access is None else _entries(data.scopes, data.access)
    state = await keys.change_access(key_id, access=access, name=data.name, rate_limit=data.rate_limit,
                                     expected_version=_expected_version(if_match), metadata=metadata, grantor=admin,
                                     description=data.description, tags=data.tags,
                                     allowed_networks=data.allowed_networks, credits=_credits_change(data.credits),
                                     owner_id=data.owner_id)
    credits = await live_credits(credit_ledger, [state], now)
    return _tagged(msgspec.convert(_view(state, now, credits=credits.get(key_id)), Key), state)


@post("/v1/keys/{key_id:str}/rotate", status_code=200, middleware=[timed("rotate")], response_headers=ETAG,
      responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503), guards=[admin_guard], security=SECURITY)
async def rotate_key(key_id: KeyId, keys: NamedDependency[KeyService], cache: NamedDependency[KeyDirectory],
                     admin: NamedDependency[KeyState], metadata: NamedDependency[Metadata],
                     now: NamedDependency[datetime], data: JSONBody[RotateKeyRequest | None] = None,
                     if_match: IfMatch = None) -> Response[KeyWithSecret]:
    """A new secret, shown once; the old one works for ``grace_seconds`` (0..7 days) more. An organization's
    admin rotates only keys it could have granted in full (403 naming what it lacks)."""
    visible_key(cache, admin, key_id)
    issued = await keys.rotate(key_id, grace_seconds=(data or RotateKeyRequest()).grace_seconds,
                               expected_version=_expected_version(if_match), metadata=metadata, grantor=admin)
    return _tagged(msgspec.convert(_view(issued.state, now, secret=issued.token), KeyWithSecret), issued.state)


@post("/v1/keys/{key_id:str}/revoke", status_code=200, middleware=[timed("revoke")], response_headers=ETAG,
      responses=error_responses(400, 401, 403, 404, 409, 413, 429, 503), guards=[admin_guard], security=SECURITY)
async def revoke_key(key_id: KeyId, keys: NamedDependency[KeyService], cache: NamedDependency[KeyDirectory],
                     admin: NamedDependency[KeyState], metadata: NamedDependency[Metadata],
                     now: NamedDependency[datetime], data: JSONBody[RevokeKeyRequest | None] = None,
                     if_match: IfMatch = None) -> Response[Key]:
    """Revoke at once and for good."""
    visible_key(cache, admin, key_id)
    state = await keys.revoke(key_id, reason=(data or RevokeKeyRequest()).reason,
                              expected_version=_expected_version(if_match), metadata=metadata)
    return _tagged(msgspec.convert(key_view(state, now), Key), state)


KEY_ROUTES = [create_key, list_keys, get_key, change_key, rotate_key, revoke_key]
