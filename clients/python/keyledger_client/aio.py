"""``AsyncKeyledger``: the asyncio client (one connection pool per client: make one and reuse it)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
import msgspec

from keyledger_client import _plans as plans
from keyledger_client._calls import KEEP, AccessLike, Call, CreditsLike, ImportFormat, ImportRows, RetryPolicy
from keyledger_client._wire import AsyncTransport, Origin, Timeouts
from keyledger_client.client import DEFAULT_TIMEOUT, USER_AGENT
from keyledger_client.models import (
    AuditRecord,
    BulkFilter,
    BulkResult,
    ImportReport,
    Key,
    KeyWithSecret,
    Owner,
    UsageSeries,
    VerifyResult,
)

T = TypeVar("T")


class AsyncKeyledger:
    """A keyledger API client for asyncio: the calls of :class:`~keyledger_client.Keyledger`, awaited.
    ``api_key`` is the caller's credential: a verify credential (``klvc_...``) for :meth:`verify`, an
    ``admin:apikeys`` key for management, a ``read:export`` key for the audit trail.

    Calls that are safe to repeat are retried on connection errors, timeouts, 502/503/504 and 429 (after
    ``Retry-After``) with exponential backoff and jitter (``retry``); the others only when the request
    was never sent. ``timeout`` bounds each attempt.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: random.Random | None = None) -> None:
        headers = {"user-agent": USER_AGENT, **({"authorization": f"Bearer {api_key}"} if api_key else {})}
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        # every call on keyledger's own transport (_wire); httpx streams the export, and carries every call
        # when a ``transport`` is given (tests script answers with ``httpx.MockTransport``)
        self._wire = AsyncTransport(Origin(base_url, headers), Timeouts(timeout)) if transport is None else None
        self._retrier = plans.Retrier(retry or RetryPolicy(), rng or random.Random())
        self._sleep = sleep

    async def __aenter__(self) -> AsyncKeyledger:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pools."""
        if self._wire is not None:
            await self._wire.aclose()
        await self._http.aclose()

    async def _perform(self, step: Call | plans.Sleep | plans.Download) -> tuple[Any, BaseException | None]:
        """Do one I/O step of a plan: its outcome, or the transport error it raised."""
        try:
            if isinstance(step, plans.Sleep):
                await self._sleep(step.seconds)
                return None, None
            if isinstance(step, plans.Download):
                return await self._download(step), None
            if self._wire is not None:
                return await self._wire.request(step.method, step.path, step.params, step.body,
                                                step.request_headers()), None
            return await self._http.request(step.method, step.path, params=step.params, content=step.body,
                                            headers=step.request_headers()), None
        except httpx.TransportError as exc:
            return None, exc

    async def _download(self, step: plans.Download) -> httpx.Response | int:
        async with self._http.stream(step.call.method, step.call.path, params=step.call.params) as response:
            if response.status_code >= 400:
                await response.aread()
                return response
            written = 0
            try:
                with step.partial.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        written += out.write(chunk)
            except httpx.TransportError:
                step.partial.unlink(missing_ok=True)
                raise
            step.partial.replace(step.target)
            return written

    async def _items(self, runner: plans.Runner) -> AsyncIterator[Any]:
        step = runner.advance()
        while step is not None:
            if isinstance(step, plans.Items):
                for item in step.items:
                    yield item
                step = runner.advance()
            else:
                step = runner.advance(*await self._perform(step))

    async def _run(self, plan: plans.Plan[T]) -> T:
        runner = plans.Runner(plan)
        async for _ in self._items(runner):
            pass
        result: T = runner.result
        return result

    async def verify(self, key: str, scope: str, *, website_id: str | None = None, data: str | None = None,
                     ip: str | None = None, user_agent: str | None = None, cost: int = 1) -> VerifyResult:
        """May ``key`` do ``scope`` (on this website / data kind)? ``ip`` and ``user_agent`` are your end
        client's, for the audit trail. Every well-formed question is answered: check ``valid`` / ``code``.
        A VALID answer spends ``cost`` of a key's credits (0: check only); too few: ``USAGE_EXCEEDED``."""
        return await self._run(plans.verify(self._retrier, key, scope, website_id, data, ip, user_agent, cost))

    async def create(self, name: str, *, organization_id: str | None = None, scopes: Iterable[str] | None = None,
                     access: Iterable[AccessLike] | None = None, expires_at: datetime | None = None,
                     rate_limit: int | None = None, credits: CreditsLike | None = None,
                     allowed_networks: Iterable[str] | None = None, owner_id: str | None = None) -> KeyWithSecret:
        """Create a key; the result's ``secret`` is shown this once. ``credits``: usage credits;
        ``allowed_networks``: the only networks (CIDRs) it works from."""
        plan = plans.create(self._retrier, name, organization_id, scopes, access, expires_at, rate_limit, credits,
                            allowed_networks, owner_id)
        return await self._run(plan)

    def list(self, *, page_size: int = 100, owner_id: str | None = None) -> AsyncIterator[Key]:
        """Every key this credential may see (of ``owner_id``, when given), ordered by id, fetching page after
        page as you iterate."""
        return self._items(plans.Runner(plans.keys(self._retrier, page_size, owner_id)))

    async def get(self, key_id: str) -> Key:
        """One key, with its status and ``last_used_at``."""
        return await self._run(plans.get(self._retrier, key_id))

    async def update(self, key_id: str, *, version: int | None, name: str | None = None,
                     scopes: Iterable[str] | None = None, access: Iterable[AccessLike] | None = None,
                     rate_limit: int | None = None, credits: CreditsLike | None | msgspec.UnsetType = KEEP,
                     allowed_networks: Iterable[str] | None = None, owner_id: str | None = None) -> Key:
        """Rename and/or replace the grants (``scopes`` and ``access`` together) and/or set ``credits``
        (None removes them; left out, they stay) and/or ``allowed_networks`` (``[]`` lifts them). ``version`` is
        the key's version you last saw (sent as ``If-Match``): if it changed since, :class:`ConflictError`.
        ``None`` overwrites whatever is there (and is then not retried)."""
        plan = plans.update(self._retrier, key_id, version, name, scopes, access, rate_limit, credits,
                            allowed_networks, owner_id)
        return await self._run(plan)

    async def set_owner(self, owner_id: str, *, rate_limit: int | None | msgspec.UnsetType = KEEP,
                        credits: CreditsLike | None | msgspec.UnsetType = KEEP,
                        organization_id: str | None = None) -> Owner:
        """Set the rate limit and/or credits shared by all the keys naming ``owner_id`` (None removes one; left
        out, it stays). ``organization_id``: a global admin key's choice of organization."""
        return await self._run(plans.set_owner(self._retrier, owner_id, organization_id, rate_limit, credits))

    async def get_owner(self, owner_id: str, *, organization_id: str | None = None) -> Owner:
        """An owner's shared limits (credits live) and its keys' ids; :class:`NotFoundError` when it has none."""
        return await self._run(plans.get_owner(self._retrier, owner_id, organization_id))

    async def rotate(self, key_id: str, *, grace_seconds: int = 0, version: int | None = None) -> KeyWithSecret:
        """A new secret (shown this once); the old one keeps working for ``grace_seconds``."""
        return await self._run(plans.rotate(self._retrier, key_id, grace_seconds, version))

    async def revoke(self, key_id: str, *, reason: str = "", version: int | None = None) -> Key:
        """Revoke at once and for good."""
        return await self._run(plans.revoke(self._retrier, key_id, reason, version))

    async def bulk(self, action: Literal["revoke", "add_tags", "remove_tags"], *,
                   ids: Iterable[str] | None = None, filter: BulkFilter | Mapping[str, Any] | None = None,
                   tags: Iterable[str] | None = None, reason: str = "", dry_run: bool = False) -> BulkResult:
        """Revoke, tag or untag many keys at once (``POST /v1/keys/bulk``): the keys ``ids`` names, or those
        ``filter`` selects (``BulkFilter`` or a dict: ``organization_id``, ``tag``, ``owner_id``,
        ``created_before``). Each key gets its own event and result; ``dry_run`` changes nothing. A filter
        matching no key raises :class:`NotFoundError`, more than 10,000 keys :class:`ValidationError`."""
        return await self._run(plans.bulk(self._retrier, action, ids, filter, tags, reason, dry_run))

    def audit(self, *, key_id: str | None = None, organization_id: str | None = None, outcome: str | None = None,
              kind: Literal["usage", "lifecycle"] | None = None, since: datetime | None = None,
              until: datetime | None = None, page_size: int = 100) -> AsyncIterator[AuditRecord]:
        """Audit records matching the filters, newest first, page after page as you iterate."""
        plan = plans.audit(self._retrier, key_id, organization_id, outcome, kind, since, until, page_size)
        return self._items(plans.Runner(plan))

    async def import_keys(self, rows: ImportRows, *, format: ImportFormat,
                    organization_id: str | None = None) -> ImportReport:
        """Import keys exported from another key service (``rows``: NDJSON, or the exported rows as mappings;
        at most 10,000): they keep working with their existing secrets. A refused line is reported in the
        result (``failed``, ``results[i].error``) while the others are imported; importing the same rows again
        changes nothing (``unchanged``). ``organization_id``: where the keys go (default: each row's own)."""
        return await self._run(plans.import_keys(self._retrier, rows, format, organization_id))

    async def usage(self, *, key_id: str | None = None, owner_id: str | None = None,
                    organization_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
                    interval: Literal["hour", "day"] = "hour",
                    group_by: Literal["outcome", "scope", "website"] = "outcome") -> UsageSeries:
        """Requests per hour or day from ``since`` to ``until`` (default: the last 24 hours, or 30 days by day),
        grouped by outcome, scope or website: of one key, one owner's keys, one organization's, or every key."""
        return await self._run(plans.usage(self._retrier, key_id, owner_id, organization_id, since, until,
                                           interval, group_by))

    async def export(self, path: str | os.PathLike[str], *, format: Literal["ndjson", "csv"] = "ndjson",
                     since: datetime | None = None, until: datetime | None = None) -> int:
        """Stream the signed compliance export into ``path`` (written beside it as ``.part`` and renamed when
        complete, so a broken download never looks like an export); returns the bytes written."""
        return await self._run(plans.export(self._retrier, Path(path), format, since, until))
