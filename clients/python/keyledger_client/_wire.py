"""The clients' HTTP/1.1 transport: pooled keep-alive connections, responses read by ``httptools``
(llhttp, the parser under uvicorn), a socket per connection for :class:`Keyledger` and an asyncio protocol
for :class:`AsyncKeyledger`.

httpx spends 0.6-0.9 ms of the caller's CPU on a small JSON call; this transport spends a tenth of that
(figures: clients/python/README.md, "Transport"). It sends the :class:`~keyledger_client._calls.Call` of a
plan and answers a :class:`Response`; its failures are raised as httpx's transport errors
(``ConnectError`` / ``ConnectTimeout`` when the request was never sent, ``ReadTimeout``, ``ReadError``,
``WriteError``, ``RemoteProtocolError`` otherwise), so :class:`~keyledger_client.RetryPolicy` and the
plans judge them exactly as before. Streamed downloads (the audit export) still go through httpx.

An idle connection is checked before it is reused (closed by the server, or sent something unasked: it
is dropped, as httpcore does), and one that fails mid-call is closed, never pooled again. As with httpx's
defaults, at most ``MAX_CONNECTIONS`` calls are in flight per client (per event loop for the async one);
another waits for a free connection up to the timeout's ``pool`` seconds (then ``httpx.PoolTimeout``).
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import weakref
from collections import deque
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

import httptools
import httpx

MAX_IDLE = 32  # idle keep-alive connections kept per client
MAX_CONNECTIONS = 100  # connections open at once per client (per event loop for AsyncKeyledger), as httpx
CHUNK = 65536


class Response:
    """A complete answer: ``status_code``, ``headers`` (names in lower case) and ``content``; read like an
    ``httpx.Response`` by the plans."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code, self.headers, self.content = status_code, headers, content


class Timeouts:
    """Seconds allowed to wait for a free connection, to connect, to send a request and to wait for its
    answer (None: no bound)."""

    __slots__ = ("connect", "pool", "read", "write")

    def __init__(self, timeout: float | httpx.Timeout | None) -> None:
        if not isinstance(timeout, httpx.Timeout):
            timeout = httpx.Timeout(timeout)
        self.connect, self.read, self.write, self.pool = timeout.connect, timeout.read, timeout.write, timeout.pool


class Origin:
    """Where the calls go: ``base_url``'s host, port, TLS context and path prefix, and the header lines
    every request carries."""

    def __init__(self, base_url: str, headers: Mapping[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        # httpx's trust store, as before this transport: certifi's, or SSL_CERT_FILE / SSL_CERT_DIR when set
        self.tls = httpx.create_ssl_context() if parts.scheme == "https" else None
        self.prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        authority = parts.hostname if default_port else f"{parts.hostname}:{self.port}"
        if ":" in parts.hostname:  # IPv6 literal
            authority = f"[{parts.hostname}]" if default_port else f"[{parts.hostname}]:{self.port}"
        lines = {"host": authority, "accept": "*/*", **{k.lower(): v for k, v in headers.items()}}
        self.common = "".join(f"{name}: {value}\r\n" for name, value in lines.items())

    def request(self, method: str, path: str, params: Mapping[str, str] | None, body: bytes | None,
                headers: Mapping[str, str] | None) -> bytes:
        """The bytes of one request."""
        target = self.prefix + path + (f"?{urlencode(params)}" if params else "")
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) if headers else ""
        length = f"content-length: {len(body)}\r\n" if body is not None else ""
        head = f"{method} {target} HTTP/1.1\r\n{self.common}{extra}{length}\r\n".encode("latin-1")
        return head + body if body else head


class Reading:
    """The parser callbacks of one response (httptools calls them as bytes are fed)."""

    __slots__ = ("body", "done", "headers", "keep_alive", "parser")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.done = self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # (llhttp forgets it once the message is complete)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True

    def feed(self, data: bytes) -> None:
        """Parse ``data`` (an empty ``data``: the server closed the connection)."""
        if not data:
            raise httpx.RemoteProtocolError("the server closed the connection before answering in full")
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"unreadable response: {exc}") from exc

    def response(self) -> tuple[Response, bool]:
        """The response, and whether its connection may be used again."""
        answer = Response(self.parser.get_status_code(), self.headers, b"".join(self.body))
        return answer, self.keep_alive


def _send_error(exc: OSError) -> httpx.TransportError:
    return httpx.WriteTimeout(str(exc)) if isinstance(exc, TimeoutError) else httpx.WriteError(str(exc) or repr(exc))


class SyncTransport:
    """Blocking connections to one origin, shared by threads (an idle connection belongs to no one)."""

    def __init__(self, origin: Origin, timeouts: Timeouts) -> None:
        self.origin, self.timeouts = origin, timeouts
        self._idle: deque[socket.socket] = deque()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.origin.host, self.origin.port), timeout=self.timeouts.connect)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or repr(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.origin.tls is not None:
            try:
                sock = self.origin.tls.wrap_socket(sock, server_hostname=self.origin.host)
            except OSError as exc:
                sock.close()
                raise httpx.ConnectError(f"TLS: {exc}") from exc
        return sock

    def _connection(self) -> socket.socket:
        while self._idle:
            try:
                sock = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if not select.select([sock], [], [], 0)[0]:  # nothing to read: still open, nothing unasked
                return sock
            sock.close()
        return self._connect()

    def request(self, method: str, path: str, params: Mapping[str, str] | None = None, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        """Send one request and read its whole answer."""
        raw = self.origin.request(method, path, params, body, headers)
        if not self._slots.acquire(timeout=self.timeouts.pool):
            raise httpx.PoolTimeout(f"no free connection after {self.timeouts.pool} s")
        try:
            return self._exchange(raw)
        finally:
            self._slots.release()

    def _exchange(self, raw: bytes) -> Response:
        sock = self._connection()
        reusable = False
        try:
            sock.settimeout(self.timeouts.write)
            try:
                sock.sendall(raw)
            except OSError as exc:
                raise _send_error(exc) from exc
            sock.settimeout(self.timeouts.read)
            reading = Reading()
            while not reading.done:
                try:
                    data = sock.recv(CHUNK)
                except TimeoutError as exc:
                    raise httpx.ReadTimeout(str(exc) or "timed out") from exc
                except OSError as exc:
                    raise httpx.ReadError(str(exc) or repr(exc)) from exc
                reading.feed(data)
            answer, reusable = reading.response()
            return answer
        finally:
            if reusable and len(self._idle) < MAX_IDLE:
                self._idle.append(sock)
            else:
                sock.close()

    def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop().close()


class _Connection(asyncio.Protocol):
    """One asyncio connection: at most one call at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reading: Reading | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reading, waiter = self.reading, self.waiter
        if reading is None or waiter is None or waiter.done():  # unasked bytes: unusable from now on
            self.abort()
            return
        try:
            reading.feed(data)
        except httpx.TransportError as exc:
            waiter.set_exception(exc)
            return
        if reading.done:
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(httpx.ReadError(f"the connection was closed: {exc or 'by the server'}"))

    def abort(self) -> None:
        """Close at once (nothing more is read or written)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    async def call(self, raw: bytes, timeout: float | None) -> tuple[Response, bool]:
        """Send ``raw`` and wait for the whole answer (``timeout`` seconds at most)."""
        assert self.transport is not None
        self.reading, self.waiter = Reading(), self.loop.create_future()
        timer = self.loop.call_later(timeout, self._timed_out, self.waiter) if timeout is not None else None
        try:
            self.transport.write(raw)
            await self.waiter
            return self.reading.response()
        finally:
            if timer is not None:
                timer.cancel()
            self.reading = self.waiter = None

    @staticmethod
    def _timed_out(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(httpx.ReadTimeout("timed out waiting for the answer"))


class AsyncTransport:
    """asyncio connections to one origin; made in the loop that uses them (a connection of another loop,
    e.g. after the client moved to a new one, is dropped, not reused)."""

    def __init__(self, origin: Origin, timeouts: Timeouts) -> None:
        self.origin, self.timeouts = origin, timeouts
        self._idle: deque[_Connection] = deque()
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = \
            weakref.WeakKeyDictionary()

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        origin = self.origin
        try:
            made = loop.create_connection(lambda: _Connection(loop), origin.host, origin.port, ssl=origin.tls,
                                          server_hostname=origin.host if origin.tls else None)
            _, connection = await asyncio.wait_for(made, self.timeouts.connect)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("timed out connecting") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or repr(exc)) from exc
        return connection

    def _reuse(self, loop: asyncio.AbstractEventLoop) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.loop is loop and not connection.closed:
                return connection
            _drop(connection, loop)
        return None

    async def request(self, method: str, path: str, params: Mapping[str, str] | None = None,
                      body: bytes | None = None, headers: Mapping[str, str] | None = None) -> Response:
        """Send one request and read its whole answer."""
        raw = self.origin.request(method, path, params, body, headers)
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(MAX_CONNECTIONS)
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), self.timeouts.pool)
            except TimeoutError as exc:
                raise httpx.PoolTimeout(f"no free connection after {self.timeouts.pool} s") from exc
        else:
            await slots.acquire()  # (free: no wait)
        try:
            return await self._exchange(raw, loop)
        finally:
            slots.release()

    async def _exchange(self, raw: bytes, loop: asyncio.AbstractEventLoop) -> Response:
        connection = self._reuse(loop) or await self._connect(loop)
        reusable = False
        try:
            answer, reusable = await connection.call(raw, self.timeouts.read)
            return answer
        finally:
            if reusable and not connection.closed and len(self._idle) < MAX_IDLE:
                self._idle.append(connection)
            else:
                connection.abort()

    async def aclose(self) -> None:
        """Close the idle connections."""
        loop = asyncio.get_running_loop()
        while self._idle:
            _drop(self._idle.pop(), loop)


def _drop(connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
    """Close ``connection`` from ``loop`` (in its own loop when that is another, still running)."""
    if connection.loop is loop:
        connection.abort()
    elif not connection.loop.is_closed():
        connection.loop.call_soon_threadsafe(connection.abort)
    # (a closed loop's transport can no longer be closed: its socket is closed when it is collected)


__all__ = ["AsyncTransport", "Origin", "Response", "SyncTransport", "Timeouts"]
