"""What each call sends and how its answer is read, shared by the sync and the async client (no I/O here),
and the retry policy both follow."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from keyledger_client.errors import error_from, retry_after_seconds
from keyledger_client.models import Access, BulkFilter, Credits

T = TypeVar("T")
RETRIED_STATUSES = frozenset({502, 503, 504})
AccessLike = Access | Mapping[str, Any]
CreditsLike = Credits | Mapping[str, Any]
KEEP = msgspec.UNSET  # an update's ``credits`` left as they are (None removes them)
_encode = msgspec.json.Encoder().encode


class Answer(Protocol):
    """A complete response: an ``httpx.Response``, or the transport's own (``_wire.Response``)."""

    @property
    def status_code(self) -> int: ...
    @property
    def content(self) -> bytes: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP request to keyledger. ``idempotent``: safe to send again after a failure that may have
    reached the server (a timeout, a 502/503/504, a 429); others are retried only when the request was
    certainly never sent (the connection could not be made)."""

    method: str
    path: str
    params: dict[str, str] | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None
    idempotent: bool = True

    def request_headers(self) -> dict[str, str]:
        """Headers of this call (the JSON content type when it has a body)."""
        return {**({"content-type": "application/json"} if self.body is not None else {}), **(self.headers or {})}


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff with full jitter: attempt n (from 0) waits a random time in
    ``[0, min(max_delay, initial_delay * multiplier**n)]``. A 429 waits its ``Retry-After`` instead (up
    to ``max_retry_after`` seconds; longer, and the 429 is raised). ``max_attempts`` counts the first try."""

    max_attempts: int = 4
    initial_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 2.0
    max_retry_after: float = 10.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt + 1``."""
        return rng.uniform(0, min(self.max_delay, self.initial_delay * self.multiplier ** attempt))

    def after_error(self, exc: httpx.TransportError, call: Call, attempt: int, rng: random.Random) -> float | None:
        """How long to wait before trying ``call`` again after ``exc``; None: give up."""
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        if attempt + 1 >= self.max_attempts or not (call.idempotent or never_sent):
            return None
        return self.backoff(attempt, rng)

    def after_response(self, response: Answer, call: Call, attempt: int, rng: random.Random) -> float | None:
        """How long to wait before trying ``call`` again after ``response``; None: it is the answer."""
        status = response.status_code
        if status not in RETRIED_STATUSES and status != 429:
            return None
        if attempt + 1 >= self.max_attempts or not call.idempotent:
            return None
        if status == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if wait is None:
                return self.backoff(attempt, rng)
            return wait if wait <= self.max_retry_after else None
        return self.backoff(attempt, rng)


NO_RETRIES = RetryPolicy(max_attempts=1)


def json_body(**fields: Any) -> bytes:
    """A JSON body of the fields that are not None (Structs and datetimes encoded as the API expects)."""
    return _encode({name: value for name, value in fields.items() if value is not None})


def owner_path(owner_id: str) -> str:
    """``/v1/owners/{owner_id}`` with the id escaped."""
    return f"/v1/owners/{quote(owner_id, safe='')}"


def set_owner_call(owner_id: str, organization_id: str | None, rate_limit: int | None | msgspec.UnsetType,
                   credits: CreditsLike | None | msgspec.UnsetType) -> Call:
    """``PUT /v1/owners/{owner_id}``: what is given is set (None: removed), the rest kept (idempotent)."""
    body: dict[str, Any] = {}
    if not isinstance(rate_limit, msgspec.UnsetType):
        body["rate_limit"] = rate_limit
    if not isinstance(credits, msgspec.UnsetType):
        body["credits"] = _credits(credits)
    params = {"organization_id": organization_id} if organization_id is not None else None
    return Call(method="PUT", path=owner_path(owner_id), body=_encode(body), params=params)


def _credits(credits: CreditsLike | None) -> Any:
    """A credits setting as the API takes it (what a key shows besides, ``refilled_at``, is left out)."""
    if credits is None:
        return None
    setting = msgspec.to_builtins(credits) if isinstance(credits, Credits) else dict(credits)
    setting.pop("refilled_at", None)
    return setting


def _access(entries: Iterable[AccessLike] | None) -> list[Any] | None:
    return None if entries is None else [msgspec.to_builtins(e) if isinstance(e, Access) else dict(e) for e in entries]


def if_match(version: int | None) -> dict[str, str] | None:
    """``If-Match`` for a key version (the server refuses a stale one with 409)."""
    return None if version is None else {"If-Match": f'"{version}"'}


def verify_call(key: str, scope: str, website_id: str | None, data: str | None, ip: str | None,
                user_agent: str | None, cost: int = 1) -> Call:
    """``POST /v1/verify`` (a question: retried like a read; a retry may count twice against the key's limit
    and spend its ``cost`` of credits twice)."""
    return Call(method="POST", path="/v1/verify", body=json_body(key=key, scope=scope, website_id=website_id,
                                                                   data=data, ip=ip, user_agent=user_agent,
                                                                   cost=None if cost == 1 else cost))


def create_call(name: str, organization_id: str | None, scopes: Iterable[str] | None,
                access: Iterable[AccessLike] | None, expires_at: datetime | None, rate_limit: int | None,
                credits: CreditsLike | None = None, allowed_networks: Iterable[str] | None = None,
                owner_id: str | None = None) -> Call:
    """``POST /v1/keys`` (not idempotent: a retry could make a second key)."""
    body = json_body(name=name, organization_id=organization_id, scopes=list(scopes) if scopes is not None else None,
                     access=_access(access), expires_at=expires_at, rate_limit=rate_limit, credits=_credits(credits),
                     allowed_networks=list(allowed_networks) if allowed_networks is not None else None,
                     owner_id=owner_id)
    return Call(method="POST", path="/v1/keys", body=body, idempotent=False)


def list_call(cursor: str | None, page_size: int, owner_id: str | None = None) -> Call:
    """One page of ``GET /v1/keys`` (``owner_id``: only that owner's keys)."""
    params = {"limit": str(page_size), **({"cursor": cursor} if cursor else {}),
              **({"owner_id": owner_id} if owner_id is not None else {})}
    return Call(method="GET", path="/v1/keys", params=params)


def key_path(key_id: str, action: str = "") -> str:
    """``/v1/keys/{id}[/action]`` with the id escaped."""
    return f"/v1/keys/{quote(key_id, safe='')}{action}"


def update_call(key_id: str, version: int | None, name: str | None, scopes: Iterable[str] | None,
                access: Iterable[AccessLike] | None, rate_limit: int | None,
                credits: CreditsLike | None | msgspec.UnsetType = KEEP,
                allowed_networks: Iterable[str] | None = None, owner_id: str | None = None) -> Call:
    """``PATCH /v1/keys/{id}``: idempotent only with a version (a repeat is then refused as stale, not applied
    twice). ``credits`` None removes them (sent as null); :data:`KEEP` leaves them. ``allowed_networks``: None
    leaves them, ``[]`` lifts them. ``owner_id``: None leaves it, ``""`` clears it."""
    body = json_body(name=name, scopes=list(scopes) if scopes is not None else None, access=_access(access),
                     rate_limit=rate_limit,
                     allowed_networks=list(allowed_networks) if allowed_networks is not None else None,
                     owner_id=owner_id)
    if not isinstance(credits, msgspec.UnsetType):
        body = _encode({**msgspec.json.decode(body), "credits": _credits(credits)})
    return Call(method="PATCH", path=key_path(key_id), body=body, headers=if_match(version),
                idempotent=version is not None)


def rotate_call(key_id: str, grace_seconds: int, version: int | None) -> Call:
    """``POST /v1/keys/{id}/rotate`` (not idempotent: a repeat would replace the new secret)."""
    return Call(method="POST", path=key_path(key_id, "/rotate"), body=json_body(grace_seconds=grace_seconds),
                headers=if_match(version), idempotent=False)


def revoke_call(key_id: str, reason: str, version: int | None) -> Call:
    """``POST /v1/keys/{id}/revoke`` (retried only when the request was never sent)."""
    return Call(method="POST", path=key_path(key_id, "/revoke"), body=json_body(reason=reason),
                headers=if_match(version), idempotent=False)


def bulk_call(action: str, ids: Iterable[str] | None, filter: BulkFilter | Mapping[str, Any] | None,
              tags: Iterable[str] | None, reason: str, dry_run: bool) -> Call:
    """``POST /v1/keys/bulk`` (a dry run is retried like a read; a real one only when it was never sent)."""
    selected = msgspec.to_builtins(filter) if isinstance(filter, BulkFilter) else filter
    body = json_body(action=action, ids=list(ids) if ids is not None else None, filter=selected,
                     tags=list(tags) if tags is not None else None, reason=reason or None, dry_run=dry_run or None)
    return Call(method="POST", path="/v1/keys/bulk", body=body, idempotent=dry_run)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def audit_call(cursor: str | None, page_size: int, key_id: str | None, organization_id: str | None,
               outcome: str | None, kind: Literal["usage", "lifecycle"] | None, since: datetime | None,
               until: datetime | None) -> Call:
    """One page of ``GET /v1/audit``, newest first."""
    params = {"limit": str(page_size), "key_id": key_id, "organization_id": organization_id, "outcome": outcome,
              "kind": kind, "from": _time(since), "to": _time(until), "cursor": cursor}
    return Call(method="GET", path="/v1/audit", params={k: v for k, v in params.items() if v is not None})


def usage_call(key_id: str | None, owner_id: str | None, organization_id: str | None, since: datetime | None,
               until: datetime | None, interval: Literal["hour", "day"],
               group_by: Literal["outcome", "scope", "website"]) -> Call:
    """``GET /v1/analytics/usage``."""
    params = {"key_id": key_id, "owner_id": owner_id, "organization_id": organization_id, "from": _time(since),
              "to": _time(until), "interval": interval, "group_by": group_by}
    return Call(method="GET", path="/v1/analytics/usage", params={k: v for k, v in params.items() if v is not None})


def export_call(format: Literal["ndjson", "csv"], since: datetime | None, until: datetime | None) -> Call:
    """``GET /v1/audit/export`` (streamed)."""
    params = {"format": format, "from": _time(since), "to": _time(until)}
    return Call(method="GET", path="/v1/audit/export", params={k: v for k, v in params.items() if v is not None})


def decoded(response: Answer, kind: type[T]) -> T:
    """The body of a successful ``response`` as ``kind``; an error response raises its exception."""
    if response.status_code >= 400:
        raise error_from(response.status_code, response.content, response.headers.get("retry-after"))
    return msgspec.json.decode(response.content, type=kind)


ImportRows = bytes | str | Iterable[Mapping[str, Any]]  # NDJSON as it is, or exported rows to encode as NDJSON
ImportFormat = Literal["databuddy", "better-auth", "unkey", "keyledger"]


def import_call(rows: ImportRows, format: ImportFormat, organization_id: str | None) -> Call:
    """``POST /v1/keys/import`` with the rows as NDJSON (retried like a read: the import is idempotent by the
    source's key ids, so a repeat changes nothing)."""
    if isinstance(rows, str):
        body = rows.encode()
    elif isinstance(rows, bytes):
        body = rows
    else:
        body = b"".join(msgspec.json.encode(row) + b"\n" for row in rows)
    params = {"format": format, **({"organization_id": organization_id} if organization_id else {})}
    return Call(method="POST", path="/v1/keys/import", params=params, body=body,
                headers={"content-type": "application/x-ndjson"})
