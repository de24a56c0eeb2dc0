"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for benchmark set-up and probes.

httpx costs about a millisecond per request of client CPU; these helpers cost tens of
microseconds, so a probe (e.g. "is the key refused yet?") measures the server, not us.
Only what keyledger and the trivial app answer is supported: Content-Length bodies.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

_json = msgspec.json.Encoder()


class HttpError(Exception):
    """A response the client could not read, or an unexpected status."""


def build_request(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                  host: str = "127.0.0.1") -> bytes:
    """The raw bytes of one keep-alive request; ``body`` is JSON-encoded unless it is bytes."""
    payload = b"" if body is None else body if isinstance(body, bytes) else _json.encode(body)
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}", f"content-length: {len(payload)}"]
    if payload:
        lines.append("content-type: application/json")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def parse_head(head: bytes) -> tuple[int, int]:
    """(status, content length) from a response head without the final blank line."""
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        if b"\r\ntransfer-encoding:" in lower:
            raise HttpError("chunked responses are not supported")
        return status, 0
    end = lower.find(b"\r\n", at + 2)
    return status, int(lower[at + 17: end if end >= 0 else len(lower)])


class Client:
    """One keep-alive connection; ``request`` returns (status, body bytes)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send prepared request bytes (see ``build_request``) and read the whole response."""
        reused = self._writer is not None
        try:
            head = await self._send_head(raw)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if not reused or isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                raise
            await self.close()  # the server closed an idle keep-alive connection: one fresh try
            head = await self._send_head(raw)
        assert self._reader is not None
        status, length = parse_head(head[:-4])
        body = await self._reader.readexactly(length) if length else b""
        if b"\r\nconnection: close" in head.lower():
            await self.close()
        return status, body

    async def _send_head(self, raw: bytes) -> bytes:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(raw)
        return await self._reader.readuntil(b"\r\n\r\n")

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request on this connection (opened on first use, reopened after a close)."""
        return await self.send(build_request(method, path, body, headers, self.host))

    async def json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                   expect: int | tuple[int, ...] = (200, 201)) -> Any:
        """The decoded JSON answer; HttpError when the status is not one of ``expect``."""
        status, raw = await self.request(method, path, body, headers)
        if status not in ((expect,) if isinstance(expect, int) else expect):
            raise HttpError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")
        return msgspec.json.decode(raw)

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
