"""Every call of the client as a plan, written once for the sync and the async client (no I/O here).

A plan is a generator: it yields the steps it needs (send a :class:`Call`, sleep, download into a file,
hand a page of items to the caller) and receives each step's outcome: the response of a call (an
:class:`~keyledger_client._calls.Answer`), the bytes written by a download, or the ``httpx.TransportError``
that the step raised, thrown into it.
The retry loop, pagination and the export's retries live here; each client only performs the steps
(:class:`Runner` advances a plan), so the two clients cannot drift apart.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import httpx
import msgspec

from keyledger_client import _calls as calls
from keyledger_client._calls import KEEP, AccessLike, Call, CreditsLike, RetryPolicy
from keyledger_client.errors import KeyledgerConnectionError, error_from
from keyledger_client.models import (
    AuditPage,
    BulkFilter,
    BulkResult,
    ImportReport,
    Key,
    KeyPage,
    KeyWithSecret,
    Owner,
    UsageSeries,
    VerifyResult,
)

T = TypeVar("T")


class Sleep(NamedTuple):
    """Wait this long before the next attempt."""

    seconds: float


class Download(NamedTuple):
    """Stream ``call``'s answer into ``partial``, then rename it to ``target``; the outcome is the number of
    bytes written, or the error response (its body read) when the status is 400 or more."""

    call: Call
    partial: Path
    target: Path


class Items(NamedTuple):
    """A page of items for the caller of an iterating call (its outcome is nothing)."""

    items: Sequence[Any]


Step = Call | Sleep | Download | Items
Plan = Generator[Step, Any, T]


class Retrier(NamedTuple):
    """The retry policy of one client and its source of jitter."""

    policy: RetryPolicy
    rng: random.Random


def attempts(retrier: Retrier, step: Call | Download) -> Plan[Any]:
    """Perform ``step`` until it gives the answer: retried after transport errors and retried statuses as
    :class:`RetryPolicy` says; the answer is the response (or the bytes a download wrote)."""
    call = step if isinstance(step, Call) else step.call
    attempt = 0
    while True:
        try:
            outcome = yield step
        except httpx.TransportError as exc:
            delay = retrier.policy.after_error(exc, call, attempt, retrier.rng)
            if delay is None:
                raise KeyledgerConnectionError(f"{call.method} {call.path}: {type(exc).__name__}: {exc}") from exc
        else:
            if isinstance(outcome, int):  # the bytes a download wrote
                return outcome
            delay = retrier.policy.after_response(outcome, call, attempt, retrier.rng)
            if delay is None:
                return outcome
        yield Sleep(delay)
        attempt += 1


def answer(retrier: Retrier, call: Call, kind: type[T]) -> Plan[T]:
    """``call``'s successful answer as ``kind`` (an error answer raises its exception)."""
    return calls.decoded((yield from attempts(retrier, call)), kind)


def pages(retrier: Retrier, page_call: Callable[[str | None], Call],
          kind: type[KeyPage] | type[AuditPage]) -> Plan[None]:
    """Every item of a paginated listing, page after page, fetched as the caller iterates."""
    cursor: str | None = None
    while True:
        page = yield from answer(retrier, page_call(cursor), kind)
        yield Items(page.items)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def verify(retrier: Retrier, key: str, scope: str, website_id: str | None, data: str | None, ip: str | None,
           user_agent: str | None, cost: int = 1) -> Plan[VerifyResult]:
    """``POST /v1/verify``."""
    call = calls.verify_call(key, scope, website_id, data, ip, user_agent, cost)
    return (yield from answer(retrier, call, VerifyResult))


def create(retrier: Retrier, name: str, organization_id: str | None, scopes: Iterable[str] | None,
           access: Iterable[AccessLike] | None, expires_at: datetime | None,
           rate_limit: int | None, credits: CreditsLike | None = None,
           allowed_networks: Iterable[str] | None = None, owner_id: str | None = None) -> Plan[KeyWithSecret]:
    """``POST /v1/keys``."""
    call = calls.create_call(name, organization_id, scopes, access, expires_at, rate_limit, credits, allowed_networks,
                             owner_id)
    return (yield from answer(retrier, call, KeyWithSecret))


def keys(retrier: Retrier, page_size: int, owner_id: str | None = None) -> Plan[None]:
    """Every key (of ``owner_id``, when given), page after page."""
    return (yield from pages(retrier, lambda cursor: calls.list_call(cursor, page_size, owner_id), KeyPage))


def get(retrier: Retrier, key_id: str) -> Plan[Key]:
    """``GET /v1/keys/{id}``."""
    return (yield from answer(retrier, Call(method="GET", path=calls.key_path(key_id)), Key))


def update(retrier: Retrier, key_id: str, version: int | None, name: str | None, scopes: Iterable[str] | None,
           access: Iterable[AccessLike] | None, rate_limit: int | None,
           credits: CreditsLike | None | msgspec.UnsetType = KEEP,
           allowed_networks: Iterable[str] | None = None, owner_id: str | None = None) -> Plan[Key]:
    """``PATCH /v1/keys/{id}``."""
    call = calls.update_call(key_id, version, name, scopes, access, rate_limit, credits, allowed_networks, owner_id)
    return (yield from answer(retrier, call, Key))


def set_owner(retrier: Retrier, owner_id: str, organization_id: str | None, rate_limit: int | None | msgspec.UnsetType,
              credits: CreditsLike | None | msgspec.UnsetType) -> Plan[Owner]:
    """``PUT /v1/owners/{owner_id}``."""
    return (yield from answer(retrier, calls.set_owner_call(owner_id, organization_id, rate_limit, credits), Owner))


def get_owner(retrier: Retrier, owner_id: str, organization_id: str | None) -> Plan[Owner]:
    """``GET /v1/owners/{owner_id}``."""
    params = {"organization_id": organization_id} if organization_id is not None else None
    return (yield from answer(retrier, Call(method="GET", path=calls.owner_path(owner_id), params=params), Owner))


def rotate(retrier: Retrier, key_id: str, grace_seconds: int, version: int | None) -> Plan[KeyWithSecret]:
    """``POST /v1/keys/{id}/rotate``."""
    return (yield from answer(retrier, calls.rotate_call(key_id, grace_seconds, version), KeyWithSecret))


def revoke(retrier: Retrier, key_id: str, reason: str, version: int | None) -> Plan[Key]:
    """``POST /v1/keys/{id}/revoke``."""
    return (yield from answer(retrier, calls.revoke_call(key_id, reason, version), Key))


def bulk(retrier: Retrier, action: str, ids: Iterable[str] | None, filter: BulkFilter | Mapping[str, Any] | None,
         tags: Iterable[str] | None, reason: str, dry_run: bool) -> Plan[BulkResult]:
    """``POST /v1/keys/bulk``."""
    return (yield from answer(retrier, calls.bulk_call(action, ids, filter, tags, reason, dry_run), BulkResult))


def audit(retrier: Retrier, key_id: str | None, organization_id: str | None, outcome: str | None,
          kind: Literal["usage", "lifecycle"] | None, since: datetime | None, until: datetime | None,
          page_size: int) -> Plan[None]:
    """Audit records, newest first, page after page."""
    def page(cursor: str | None) -> Call:
        return calls.audit_call(cursor, page_size, key_id, organization_id, outcome, kind, since, until)
    return (yield from pages(retrier, page, AuditPage))


def usage(retrier: Retrier, key_id: str | None, owner_id: str | None, organization_id: str | None,
          since: datetime | None, until: datetime | None, interval: Literal["hour", "day"],
          group_by: Literal["outcome", "scope", "website"]) -> Plan[UsageSeries]:
    """``GET /v1/analytics/usage``."""
    call = calls.usage_call(key_id, owner_id, organization_id, since, until, interval, group_by)
    return (yield from answer(retrier, call, UsageSeries))


def export(retrier: Retrier, target: Path, format: Literal["ndjson", "csv"], since: datetime | None,
           until: datetime | None) -> Plan[int]:
    """The signed export streamed into ``target`` (through ``target.part``); the bytes written."""
    download = Download(calls.export_call(format, since, until), target.with_name(target.name + ".part"), target)
    outcome = yield from attempts(retrier, download)
    if isinstance(outcome, httpx.Response):
        raise error_from(outcome.status_code, outcome.content, outcome.headers.get("retry-after"))
    written: int = outcome
    return written


def import_keys(retrier: Retrier, rows: calls.ImportRows, format: calls.ImportFormat,
                organization_id: str | None) -> Plan[ImportReport]:
    """``POST /v1/keys/import``."""
    return (yield from answer(retrier, calls.import_call(rows, format, organization_id), ImportReport))


class Runner:
    """Advances one plan: give it each step's outcome (or error) and it answers with the next step, or None
    once the plan is done (its ``result`` then holds what the plan returned)."""

    def __init__(self, plan: Plan[Any]) -> None:
        self._plan = plan
        self.result: Any = None

    def advance(self, outcome: Any = None, error: BaseException | None = None) -> Step | None:
        """The next step after ``outcome`` (or ``error``, thrown into the plan); None when the plan is done."""
        try:
            return self._plan.throw(error) if error is not None else self._plan.send(outcome)
        except StopIteration as done:
            self.result = done.value
            return None
