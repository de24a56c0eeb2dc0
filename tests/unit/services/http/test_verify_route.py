"""``POST /v1/verify`` served by its raw ASGI route, ahead of Litestar's router: the same answers, bodies and
headers as every other route, whatever the body's chunks, its size, or an exception inside."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from keyledger.domain.access import AccessEntry
from keyledger.services.http.app import create_app
from keyledger.services.http.components import Components
from keyledger.services.http.errors import MAX_BODY_BYTES
from keyledger.services.verify.throttles import RateDecision

Client = AsyncTestClient[Litestar]


async def _token(components: Components, rate_limit: int | None = None) -> str:
    issued = await components.keys.create("reader", access=(AccessEntry(resource="global", scopes=("read:data",)),),
                                          rate_limit=rate_limit)
    return issued.token


async def _call(app: Litestar, chunks: list[bytes], headers: list[tuple[bytes, bytes]] | None = None,
                disconnect: bool = False) -> list[dict[str, Any]]:
    """One ``POST /v1/verify`` straight through ASGI, its body in ``chunks``; the messages the app sent."""
    inbox: list[dict[str, Any]] = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
                                   for i, chunk in enumerate(chunks)]
    if disconnect:
        inbox = [*inbox[:1], {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/verify", "raw_path": b"/v1/verify", "root_path": "", "query_string": b"",
             "headers": headers or [(b"content-type", b"application/json")], "client": ("192.0.2.9", 4000),
             "server": ("127.0.0.1", 80), "state": {}}
    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


def _answer(sent: list[dict[str, Any]]) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    start, body = sent
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    headers = dict(start["headers"])
    assert int(headers[b"content-length"]) == len(body["body"])
    return start["status"], headers, msgspec.json.decode(body["body"])


async def test_a_body_in_several_chunks_is_read_whole(app: Litestar, client: Client, components: Components) -> None:
    body = msgspec.json.encode({"key": await _token(components), "scope": "read:data"})
    status, headers, answer = _answer(await _call(app, [body[:5], body[5:20], body[20:]]))
    assert (status, answer["valid"], answer["code"]) == (200, True, "VALID")
    assert headers[b"content-type"] == b"application/json" and len(headers[b"x-request-id"]) == 32


async def test_a_declared_or_streamed_body_over_the_cap_is_413(app: Litestar, client: Client) -> None:
    declared = [(b"content-type", b"application/json"), (b"content-length", str(MAX_BODY_BYTES + 1).encode())]
    status, _, body = _answer(await _call(app, [b"{}"], headers=declared))
    assert (status, body["success"], body["code"]) == (413, False, "VALIDATION_ERROR")
    streamed = [b"x" * (MAX_BODY_BYTES // 2)] * 3  # no content-length: counted as it arrives
    status, _, body = _answer(await _call(app, streamed))
    assert (status, body["code"]) == (413, "VALIDATION_ERROR")


async def test_a_client_gone_before_its_body_gets_no_answer(app: Litestar, client: Client) -> None:
    assert await _call(app, [b'{"key":', b"more"], disconnect=True) == []


async def test_the_rate_limit_headers_and_request_id_go_out_on_answers_and_refusals(client: Client,
                                                                                  components: Components) -> None:
    token = await _token(components, rate_limit=1)
    first = await client.post("/v1/verify", json={"key": token, "scope": "read:data"},
                              headers={"x-request-id": "trace-1"})
    assert first.json()["valid"] is True and first.headers["x-request-id"] == "trace-1"
    assert (first.headers["x-ratelimit-limit"], first.headers["x-ratelimit-remaining"]) == ("1", "0")
    over = await client.post("/v1/verify", json={"key": token, "scope": "read:data"})
    assert (over.status_code, over.json()["code"], over.headers["x-ratelimit-remaining"]) == (200, "RATE_LIMITED", "0")
    assert int(over.headers["retry-after"]) >= 1


async def test_the_route_answers_as_its_documented_handler_does(client: Client, components: Components) -> None:
    """``/v1/verify/`` still reaches the Litestar handler (in ``/schema``): the same answer, body and headers."""
    token = await _token(components)
    raw = await client.post("/v1/verify", json={"key": token, "scope": "read:data"})
    routed = await client.post("/v1/verify/", json={"key": token, "scope": "read:data"})
    assert routed.status_code == raw.status_code == 200
    assert {**routed.json(), "ratelimit": None} == {**raw.json(), "ratelimit": None}  # one request later
    assert {k for k in routed.headers if k.startswith("x-")} == {k for k in raw.headers if k.startswith("x-")}
    for path in ("/v1/verify", "/v1/verify/"):
        refused = await client.post(path, content=b"not json")
        assert (refused.status_code, refused.json()["code"]) == (400, "VALIDATION_ERROR"), path


class _Broken:
    """A rate limiter with a bug in it."""

    async def hit(self, key_id: str, limit: int) -> RateDecision:
        raise RuntimeError(f"internal detail of {key_id}")


async def test_an_unexpected_error_is_a_500_with_no_internals(components: Components) -> None:
    token = await _token(components)
    app = create_app(components=msgspec.structs.replace(components, limiter=_Broken()))
    async with AsyncTestClient(app) as client:
        response = await client.post("/v1/verify", json={"key": token, "scope": "read:data"})
    assert response.status_code == 500
    assert response.json() == {"success": False, "error": "internal error", "code": "INTERNAL_ERROR"}
    assert "x-request-id" in response.headers
