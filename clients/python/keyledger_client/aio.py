"""``AsyncKeyledger``: the asyncio client (one connection pool per client: make one and reuse it)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

import httpx

from keyledger_client import _calls as calls
from keyledger_client._calls import AccessLike, Call, RetryPolicy
from keyledger_client.client import DEFAULT_TIMEOUT, USER_AGENT
from keyledger_client.errors import KeyledgerConnectionError, error_from
from keyledger_client.models import AuditPage, AuditRecord, Key, KeyPage, KeyWithSecret, VerifyResult


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
        self._retry, self._sleep, self._rng = retry or RetryPolicy(), sleep, rng or random.Random()

    async def __aenter__(self) -> AsyncKeyledger:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, params=call.params, content=call.body,
                                              headers=call.request_headers())
            except httpx.TransportError as exc:
                delay = self._retry.after_error(exc, call, attempt, self._rng)
                if delay is None:
                    raise KeyledgerConnectionError(f"{call.method} {call.path}: {type(exc).__name__}: {exc}") from exc
            else:
                delay = self._retry.after_response(response, call, attempt, self._rng)
                if delay is None:
                    return response
            await self._sleep(delay)
            attempt += 1

    async def verify(self, key: str, scope: str, *, website_id: str | None = None, data: str | None = None,
               ip: str | None = None, user_agent: str | None = None) -> VerifyResult:
        """May ``key`` do ``scope`` (on this website / data kind)? ``ip`` and ``user_agent`` are your end
        client's, for the audit trail. Every well-formed question is answered: check ``valid`` / ``code``."""
        call = calls.verify_call(key, scope, website_id, data, ip, user_agent)
        return calls.decoded(await self._send(call), VerifyResult)

    async def create(self, name: str, *, organization_id: str | None = None, scopes: Iterable[str] | None = None,
               access: Iterable[AccessLike] | None = None, expires_at: datetime | None = None,
               rate_limit: int | None = None) -> KeyWithSecret:
        """Create a key; the result's ``secret`` is shown this once."""
        call = calls.create_call(name, organization_id, scopes, access, expires_at, rate_limit)
        return calls.decoded(await self._send(call), KeyWithSecret)

    async def list(self, *, page_size: int = 100) -> AsyncIterator[Key]:
        """Every key this credential may see, ordered by id, fetching page after page as you iterate."""
        cursor: str | None = None
        while True:
            page = calls.decoded(await self._send(calls.list_call(cursor, page_size)), KeyPage)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get(self, key_id: str) -> Key:
        """One key, with its status and ``last_used_at``."""
        return calls.decoded(await self._send(Call(method="GET", path=calls.key_path(key_id))), Key)

    async def update(self, key_id: str, *, version: int | None, name: str | None = None,
               scopes: Iterable[str] | None = None, access: Iterable[AccessLike] | None = None,
               rate_limit: int | None = None) -> Key:
        """Rename and/or replace the grants (``scopes`` and ``access`` together). ``version`` is the key's
        version you last saw (sent as ``If-Match``): if it changed since, :class:`ConflictError`. ``None``
        overwrites whatever is there (and is then not retried)."""
        call = calls.update_call(key_id, version, name, scopes, access, rate_limit)
        return calls.decoded(await self._send(call), Key)

    async def rotate(self, key_id: str, *, grace_seconds: int = 0, version: int | None = None) -> KeyWithSecret:
        """A new secret (shown this once); the old one keeps working for ``grace_seconds``."""
        return calls.decoded(await self._send(calls.rotate_call(key_id, grace_seconds, version)), KeyWithSecret)

    async def revoke(self, key_id: str, *, reason: str = "", version: int | None = None) -> Key:
        """Revoke at once and for good."""
        return calls.decoded(await self._send(calls.revoke_call(key_id, reason, version)), Key)

    async def audit(self, *, key_id: str | None = None, organization_id: str | None = None, outcome: str | None = None,
              kind: Literal["usage", "lifecycle"] | None = None, since: datetime | None = None,
              until: datetime | None = None, page_size: int = 100) -> AsyncIterator[AuditRecord]:
        """Audit records matching the filters, newest first, page after page as you iterate."""
        cursor: str | None = None
        while True:
            call = calls.audit_call(cursor, page_size, key_id, organization_id, outcome, kind, since, until)
            page = calls.decoded(await self._send(call), AuditPage)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def export(self, path: str | os.PathLike[str], *, format: Literal["ndjson", "csv"] = "ndjson",
               since: datetime | None = None, until: datetime | None = None) -> int:
        """Stream the signed compliance export into ``path`` (written beside it as ``.part`` and renamed when
        complete, so a broken download never looks like an export); returns the bytes written."""
        call, target = calls.export_call(format, since, until), Path(path)
        partial = target.with_name(target.name + ".part")
        for attempt in range(self._retry.max_attempts):
            try:
                async with self._http.stream(call.method, call.path, params=call.params) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        delay = self._retry.after_response(response, call, attempt, self._rng)
                        if delay is None:
                            raise error_from(response.status_code, response.content,
                                             response.headers.get("retry-after"))
                    else:
                        written = 0
                        with partial.open("wb") as out:
                            async for chunk in response.aiter_bytes():
                                written += out.write(chunk)
                        partial.replace(target)
                        return written
            except httpx.TransportError as exc:
                partial.unlink(missing_ok=True)
                delay = self._retry.after_error(exc, call, attempt, self._rng)
                if delay is None:
                    raise KeyledgerConnectionError(f"export: {type(exc).__name__}: {exc}") from exc
            await self._sleep(delay)
        raise KeyledgerConnectionError("export: no attempts left")
