"""``/v1/keys``: create, list, get, change access, rotate and revoke (needs ``admin:apikeys``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, patch, post

from keyledger.domain.access import AccessEntry
from keyledger.domain.key import KeyState
from keyledger.domain.token import is_key_id
from keyledger.services.http.app import services_of
from keyledger.services.http.auth import acting_admin, admin_guard, request_metadata
from keyledger.services.http.errors import ApiError, forbidden
from keyledger.services.keys.service import IssuedKey
from keyledger.services.keys.views import join_access, key_view

Text = Annotated[str, msgspec.Meta(max_length=500)]
ScopeList = Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]], msgspec.Meta(max_length=50)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class AccessBody(msgspec.Struct, forbid_unknown_fields=True):
    """One resource grant in a request."""

    resource: Annotated[str, msgspec.Meta(max_length=64)]
    scopes: ScopeList
    id: Text | None = None


class CreateKeyBody(msgspec.Struct, forbid_unknown_fields=True):
    """POST /v1/keys."""

    name: Text
    organization_id: Text | None = None
    scopes: ScopeList = []
    access: Annotated[list[AccessBody], msgspec.Meta(max_length=100)] = []
    expires_at: AwareTime | None = None
    rate_limit: Annotated[int, msgspec.Meta(ge=1)] | None = None


class ChangeKeyBody(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH /v1/keys/{id}: scopes and access replace the key's grants together."""

    name: Text | None = None
    scopes: ScopeList | None = None
    access: Annotated[list[AccessBody], msgspec.Meta(max_length=100)] | None = None
    rate_limit: Annotated[int, msgspec.Meta(ge=0)] | None = None  # 0: back to the tier's limit


class RotateBody(msgspec.Struct, forbid_unknown_fields=True):
    """POST /v1/keys/{id}/rotate."""

    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=10**9)] = 0


class RevokeBody(msgspec.Struct, forbid_unknown_fields=True):
    """POST /v1/keys/{id}/revoke."""

    reason: Text = ""


def _entries(scopes: list[str] | None, access: list[AccessBody] | None) -> tuple[AccessEntry, ...]:
    return join_access(scopes or [], [AccessEntry(resource=a.resource, id=a.id, scopes=tuple(a.scopes))
                                      for a in access or []])


def _respond(request: Request, state: KeyState, status: int = 200, secret: str | None = None) -> Response[Any]:  # type: ignore[type-arg]
    body = key_view(state, services_of(request).clock())
    if secret is not None:
        body["secret"] = secret
    return Response(body, status_code=status, headers={"ETag": f'"{state.version}"'})


def _expected_version(request: Request) -> int | None:  # type: ignore[type-arg]
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    value = header.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ApiError(400, "VALIDATION_ERROR", "If-Match must be a key version (the ETag), e.g. \"3\"")
    return int(value)


def _visible_key(request: Request, admin: KeyState, key_id: str) -> KeyState:  # type: ignore[type-arg]
    state = services_of(request).cache.get(key_id) if is_key_id(key_id) else None
    if state is None or (admin.organization_id is not None and state.organization_id != admin.organization_id):
        raise ApiError(404, "NOT_FOUND", f"key {key_id} not found")
    return state


@post("/v1/keys", status_code=201, guards=[admin_guard])
async def create_key(request: Request, data: CreateKeyBody) -> Response[Any]:  # type: ignore[type-arg]
    """Create a key; the response is the only place its secret ever appears."""
    admin = acting_admin(request)
    organization = data.organization_id
    if admin.organization_id is not None:
        if organization not in (None, admin.organization_id):
            raise forbidden("an organization's admin key can only create keys of that organization")
        organization = admin.organization_id
    issued: IssuedKey = await services_of(request).keys.create(
        data.name, organization_id=organization, access=_entries(data.scopes, data.access),
        expires_at=data.expires_at, rate_limit=data.rate_limit, metadata=request_metadata(request, admin))
    return _respond(request, issued.state, 201, secret=issued.token)


@get("/v1/keys", guards=[admin_guard])
async def list_keys(request: Request, cursor: str | None = None, limit: int = 50) -> dict[str, Any]:  # type: ignore[type-arg]
    """Keys ordered by id, ``limit`` (1-100) at a time; ``next_cursor`` continues. Never secrets."""
    admin = acting_admin(request)
    if not 1 <= limit <= 100:
        raise ApiError(400, "VALIDATION_ERROR", "limit must be between 1 and 100")
    services = services_of(request)
    states = sorted((s for s in services.cache.states()
                     if admin.organization_id is None or s.organization_id == admin.organization_id
                     if cursor is None or s.key_id > cursor), key=lambda s: s.key_id)
    page = states[:limit]
    used = await services.last_used.lookup(s.key_id for s in page)
    now = services.clock()
    items = [{**key_view(s, now), "last_used_at": used.get(s.key_id)} for s in page]
    return {"items": items, "next_cursor": page[-1].key_id if len(states) > limit else None}


@get("/v1/keys/{key_id:str}", guards=[admin_guard])
async def get_key(request: Request, key_id: str) -> Response[Any]:  # type: ignore[type-arg]
    """One key, with its status and last use."""
    admin = acting_admin(request)
    state = _visible_key(request, admin, key_id)
    response = _respond(request, state)
    used = await services_of(request).last_used.lookup([key_id])
    response.content["last_used_at"] = used.get(key_id)
    return response


@patch("/v1/keys/{key_id:str}", guards=[admin_guard])
async def change_key(request: Request, key_id: str, data: ChangeKeyBody) -> Response[Any]:  # type: ignore[type-arg]
    """Rename and/or replace scopes and access; ``If-Match`` guards against lost updates."""
    admin = acting_admin(request)
    _visible_key(request, admin, key_id)
    access = None if data.scopes is None and data.access is None else _entries(data.scopes, data.access)
    state = await services_of(request).keys.change_access(
        key_id, access=access, name=data.name, rate_limit=data.rate_limit, expected_version=_expected_version(request),
        metadata=request_metadata(request, admin))
    return _respond(request, state)


@post("/v1/keys/{key_id:str}/rotate", status_code=200, guards=[admin_guard])
async def rotate_key(request: Request, key_id: str, data: RotateBody | None = None) -> Response[Any]:  # type: ignore[type-arg]
    """A new secret, shown once; the old one works for ``grace_seconds`` (0..7 days) more."""
    admin = acting_admin(request)
    _visible_key(request, admin, key_id)
    issued = await services_of(request).keys.rotate(
        key_id, grace_seconds=(data or RotateBody()).grace_seconds, expected_version=_expected_version(request),
        metadata=request_metadata(request, admin))
    return _respond(request, issued.state, secret=issued.token)


@post("/v1/keys/{key_id:str}/revoke", status_code=200, guards=[admin_guard])
async def revoke_key(request: Request, key_id: str, data: RevokeBody | None = None) -> Response[Any]:  # type: ignore[type-arg]
    """Revoke at once and for good."""
    admin = acting_admin(request)
    _visible_key(request, admin, key_id)
    state = await services_of(request).keys.revoke(
        key_id, reason=(data or RevokeBody()).reason, expected_version=_expected_version(request),
        metadata=request_metadata(request, admin))
    return _respond(request, state)


KEY_ROUTES = [create_key, list_keys, get_key, change_key, rotate_key, revoke_key]
