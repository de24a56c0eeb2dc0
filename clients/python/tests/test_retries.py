"""Retries, backoff and errors over ``httpx.MockTransport`` (no server): what is retried, when, and how long
the client waits (recorded, never slept)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from keyledger_client import (
    AsyncKeyledger,
    Keyledger,
    KeyledgerConnectionError,
    RateLimitedError,
    RetryPolicy,
    UnavailableError,
)

VALID = {"valid": True, "code": "VALID", "reason": "granted by global", "key_id": "k1", "organization_id": None,
         "scopes": ["read:data"], "granted_by": {"resource": "global", "scopes": ["read:data"]}, "expires_at": None,
         "ratelimit": {"limit": 100, "remaining": 99, "reset": 1893456060}}
KEY: dict[str, object] = {
    "id": "k1", "prefix": "kl", "start": "kl_k1", "name": "n", "organization_id": None, "scopes": [], "access": [],
    "expires_at": None, "status": "active", "version": 1, "created_at": "2030-01-01T00:00:00Z", "secret": "kl_secret"}
Answer = Callable[[httpx.Request], httpx.Response]


def scripted(*answers: Answer | Exception) -> tuple[list[httpx.Request], httpx.MockTransport]:
    """A transport answering the n-th request with the n-th answer (an exception is raised instead)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        answer = answers[len(seen)]
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer(request)
    return seen, httpx.MockTransport(handle)


def status(code: int, body: object = None, headers: dict[str, str] | None = None) -> Answer:
    return lambda request: httpx.Response(code, json=body, headers=headers)


def client(transport: httpx.MockTransport, waits: list[float], **policy: float) -> Keyledger:
    return Keyledger("http://keyledger.test", "klvc_x", transport=transport, sleep=waits.append,
                     rng=random.Random(7), retry=RetryPolicy(**policy))  # type: ignore[arg-type]


def test_idempotent_calls_retry_5xx_and_connection_errors_with_growing_jittered_waits() -> None:
    seen, transport = scripted(httpx.ConnectError("refused"), status(502), httpx.ReadTimeout("slow"),
                               status(200, VALID))
    waits: list[float] = []
    result = client(transport, waits, initial_delay=0.1, multiplier=2, max_delay=1).verify("kl_x", "read:data")
    assert result.valid and len(seen) == 4 and len(waits) == 3
    assert all(0 <= wait <= bound for wait, bound in zip(waits, (0.1, 0.2, 0.4), strict=True))
    assert len(set(waits)) == 3  # jitter: not a fixed schedule
    assert json.loads(seen[-1].content) == {"key": "kl_x", "scope": "read:data"}
    assert seen[-1].headers["authorization"] == "Bearer klvc_x"


def test_429_waits_retry_after_and_gives_up_when_it_is_too_long() -> None:
    limited = {"success": False, "error": "Rate limit exceeded", "code": "RATE_LIMITED"}
    seen, transport = scripted(status(429, limited, {"Retry-After": "3"}), status(200, VALID))
    waits: list[float] = []
    assert client(transport, waits).verify("kl_x", "read:data").valid and waits == [3.0]
    seen, transport = scripted(status(429, limited, {"Retry-After": "60"}))
    with pytest.raises(RateLimitedError) as refused:
        client(transport, waits := []).verify("kl_x", "read:data")
    assert (refused.value.code, refused.value.retry_after, len(seen), waits) == ("RATE_LIMITED", 60.0, 1, [])


def test_attempts_are_bounded_and_the_last_answer_is_raised() -> None:
    unavailable = {"success": False, "error": "the database is unavailable; retry later", "code": "UNAVAILABLE"}
    seen, transport = scripted(*[status(503, unavailable)] * 3)
    with pytest.raises(UnavailableError) as failed:
        client(transport, [], max_attempts=3).get("k1")
    assert (failed.value.status, failed.value.code, len(seen)) == (503, "UNAVAILABLE", 3)
    seen, transport = scripted(*[httpx.ConnectError("refused")] * 2)
    with pytest.raises(KeyledgerConnectionError) as unreachable:
        client(transport, [], max_attempts=2).get("k1")
    assert unreachable.value.code == "CONNECTION_ERROR" and len(seen) == 2


def test_non_idempotent_calls_retry_only_what_was_never_sent() -> None:
    seen, transport = scripted(httpx.ConnectError("refused"), status(201, KEY))
    assert client(transport, []).create("n").secret == "kl_secret" and len(seen) == 2
    for answer in (status(503), httpx.ReadTimeout("maybe created")):
        seen, transport = scripted(answer, status(201, KEY))
        with pytest.raises((UnavailableError, KeyledgerConnectionError)):
            client(transport, []).create("n")
        assert len(seen) == 1  # a second create could make a second key
    seen, transport = scripted(status(502), status(200, KEY))
    assert client(transport, []).update("k1", version=1, name="x").version == 1  # If-Match makes it safe
    assert seen[0].headers["if-match"] == '"1"' and len(seen) == 2


def test_errors_without_the_structured_body_still_carry_a_code() -> None:
    seen, transport = scripted(lambda request: httpx.Response(500, text="<html>oops</html>"))
    with pytest.raises(UnavailableError) as failed:
        client(transport, []).create("n")
    assert (failed.value.status, failed.value.code) == (500, "HTTP_500")


async def test_the_async_client_retries_the_same_way() -> None:
    seen, transport = scripted(httpx.ConnectError("refused"), status(504), status(200, VALID))
    waits: list[float] = []

    async def record(wait: float) -> None:
        waits.append(wait)

    async with AsyncKeyledger("http://keyledger.test", "klvc_x", sleep=record, rng=random.Random(1),
                              transport=httpx.MockTransport(transport.handle_request)) as async_client:
        assert (await async_client.verify("kl_x", "read:data")).valid
    assert len(seen) == 3 and len(waits) == 2


class BreaksMidway(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends one chunk and then loses the connection."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"line": 1}\n'
        raise httpx.ReadError("connection lost")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"line": 1}\n'
        raise httpx.ReadError("connection lost")


def export_script() -> tuple[list[httpx.Request], httpx.MockTransport]:
    """A 503, then a download that breaks midway, then the whole export."""
    return scripted(status(503), lambda request: httpx.Response(200, stream=BreaksMidway()),
                    lambda request: httpx.Response(200, content=b'{"line": 1}\n{"line": 2}\n'))


def test_export_retries_and_never_leaves_a_broken_download(tmp_path: Path) -> None:
    seen, transport = export_script()
    waits: list[float] = []
    target = tmp_path / "audit.ndjson"
    assert client(transport, waits).export(target) == 24
    assert target.read_bytes() == b'{"line": 1}\n{"line": 2}\n' and len(seen) == 3 and len(waits) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["audit.ndjson"]  # no .part left behind


def test_a_broken_download_out_of_attempts_is_a_connection_error_with_no_file(tmp_path: Path) -> None:
    seen, transport = scripted(lambda request: httpx.Response(200, stream=BreaksMidway()))
    with pytest.raises(KeyledgerConnectionError):
        client(transport, [], max_attempts=1).export(tmp_path / "audit.ndjson")
    assert list(tmp_path.iterdir()) == []


def test_pages_are_fetched_as_the_caller_iterates() -> None:
    page = {"items": [KEY], "next_cursor": "c2"}
    seen, transport = scripted(status(200, page), status(503), status(200, {"items": [KEY], "next_cursor": None}))
    listing = client(transport, []).list(page_size=1)
    assert next(listing).id == "k1" and len(seen) == 1  # nothing more asked for yet
    assert [key.id for key in listing] == ["k1"] and len(seen) == 3
    assert seen[1].url.params["cursor"] == "c2"


async def test_the_async_client_exports_and_pages_the_same_way(tmp_path: Path) -> None:
    waits: list[float] = []

    async def record(wait: float) -> None:
        waits.append(wait)

    seen, transport = export_script()
    async with AsyncKeyledger("http://keyledger.test", "klvc_x", sleep=record, rng=random.Random(1),
                              transport=httpx.MockTransport(transport.handle_request)) as async_client:
        assert await async_client.export(tmp_path / "a.ndjson") == 24
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.ndjson"] and len(seen) == 3 and len(waits) == 2
    pages, transport = scripted(status(200, {"items": [KEY], "next_cursor": "c2"}),
                                status(200, {"items": [KEY, KEY], "next_cursor": None}))
    async with AsyncKeyledger("http://keyledger.test", "klvc_x", sleep=record,
                              transport=httpx.MockTransport(transport.handle_request)) as async_client:
        assert [key.id async for key in async_client.list(page_size=2)] == ["k1", "k1", "k1"]
    assert pages[1].url.params["cursor"] == "c2"
