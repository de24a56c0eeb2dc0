"""The SDK's own HTTP/1.1 transport (``keyledger_client._wire``) against a scripted HTTP server on 127.0.0.1
(real sockets; each connection answered as the test says): keep-alive reuse, the retries of
:class:`RetryPolicy` on its errors, timeouts, stale idle connections, and calls cut short."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import random
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keyledger_client import (
    NO_RETRIES,
    AsyncKeyledger,
    Keyledger,
    KeyledgerConnectionError,
    RetryPolicy,
    _wire,
)
from tests.support.server import free_port
from tests.support.wait import until

VALID = {"valid": True, "code": "VALID", "reason": "granted by global", "key_id": "k1", "organization_id": None,
         "scopes": ["read:data"], "granted_by": {"resource": "global", "scopes": ["read:data"]}, "expires_at": None,
         "ratelimit": {"limit": 100, "remaining": 99, "reset": 1893456060}}
KEY: dict[str, object] = {
    "id": "k1", "prefix": "kl", "start": "kl_k1", "name": "n", "organization_id": None, "scopes": [], "access": [],
    "expires_at": None, "status": "active", "version": 1, "created_at": "2030-01-01T00:00:00Z", "secret": "kl_secret"}
# what the server does with one request: the bytes to answer (None: close without answering; "stall": never answer)
Answer = bytes | None | str


def response(status: int, body: object = None, headers: dict[str, str] | None = None) -> bytes:
    """A Content-Length response."""
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"HTTP/1.1 {status} X", "content-type: application/json", f"content-length: {len(payload)}",
            *(f"{name}: {value}" for name, value in (headers or {}).items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def chunked(status: int, body: object) -> bytes:
    """The same as a chunked response, in two chunks."""
    payload = json.dumps(body).encode()
    half = len(payload) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (payload[:half], payload[half:]))
    return f"HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"


class Scripted:
    """Answers the n-th request with the n-th answer, on whichever connection it came; records every request
    (its head and body) and counts the connections accepted."""

    def __init__(self, *answers: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answers, self.tls = list(answers), tls
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket, buffer: bytes) -> tuple[str, dict[str, str], bytes, bytes] | None:
        while b"\r\n\r\n" not in buffer:
            data = conn.recv(65536)
            if not data:
                return None
            buffer += data
        head, _, rest = buffer.partition(b"\r\n\r\n")
        start, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += conn.recv(65536)
        return start, headers, rest[:length], rest[length:]

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:  # the client refused the certificate
                conn.close()
                return
        with conn:
            while True:
                request = self._read_request(conn, buffer)
                if request is None:
                    return
                start, headers, body, buffer = request
                with self._lock:
                    self.requests.append((start, headers, body))
                    answer = self.answers[len(self.requests) - 1] if len(self.requests) <= len(self.answers) \
                        else response(500, {"success": False, "error": "unscripted", "code": "INTERNAL_ERROR"})
                if answer is None:
                    return
                if answer == "stall":
                    conn.recv(65536)  # until the client gives up and closes
                    return
                assert isinstance(answer, bytes)
                conn.sendall(answer)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def make(*answers: Answer, tls: ssl.SSLContext | None = None) -> Scripted:
        servers.append(Scripted(*answers, tls=tls))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


def sync_client(server: Scripted, waits: list[float], retry: RetryPolicy | None = None,
                **options: Any) -> Keyledger:
    return Keyledger(server.url, "klvc_x", sleep=waits.append, rng=random.Random(7), retry=retry, **options)


def test_calls_share_one_keep_alive_connection_and_send_what_the_plan_says(scripted: Callable[..., Scripted]) -> None:
    server = scripted(response(200, VALID), chunked(200, VALID), response(201, KEY))
    with sync_client(server, []) as client:
        assert client.verify("kl_x", "read:data", website_id="site-a").valid
        assert client.verify("kl_x", "read:data").key_id == "k1"  # a chunked answer is read the same
        assert client.create("n", scopes=["read:data"]).secret == "kl_secret"
    assert server.connections == 1
    (start, headers, body), *_ = server.requests
    assert start == "POST /v1/verify HTTP/1.1" and json.loads(body) == {"key": "kl_x", "scope": "read:data",
                                                                         "website_id": "site-a"}
    assert (headers["authorization"], headers["content-type"], headers["host"]) == (
        "Bearer klvc_x", "application/json", f"127.0.0.1:{server.port}")
    assert headers["user-agent"].startswith("keyledger-client-python/")
    assert server.requests[2][0] == "POST /v1/keys HTTP/1.1"


def test_verify_retries_lost_connections_5xx_and_429_as_the_policy_says(scripted: Callable[..., Scripted]) -> None:
    limited = {"success": False, "error": "Rate limit exceeded", "code": "RATE_LIMITED"}
    server = scripted(None, response(502), response(429, limited, {"Retry-After": "2"}), response(200, VALID))
    waits: list[float] = []
    policy = RetryPolicy(initial_delay=0.1, multiplier=2, max_delay=1)
    with sync_client(server, waits, policy) as client:
        assert client.verify("kl_x", "read:data").valid
    assert len(server.requests) == 4 and len(waits) == 3
    assert 0 <= waits[0] <= 0.1 and 0 <= waits[1] <= 0.2 and waits[2] == 2.0
    assert server.connections == 2  # a new connection after the one closed without an answer


def test_a_call_that_may_have_reached_the_server_is_not_repeated_unless_safe(
        scripted: Callable[..., Scripted]) -> None:
    server = scripted(None, response(201, KEY))
    with sync_client(server, []) as client, pytest.raises(KeyledgerConnectionError) as lost:
        client.create("n")  # the server read it and closed: a second create could make a second key
    assert len(server.requests) == 1 and lost.value.code == "CONNECTION_ERROR"
    nowhere = f"http://127.0.0.1:{free_port()}"
    waits: list[float] = []
    with Keyledger(nowhere, "klvc_x", sleep=waits.append, retry=RetryPolicy(max_attempts=3)) as client, \
            pytest.raises(KeyledgerConnectionError) as refused:
        client.create("n")  # never sent: retried even though create is not idempotent
    assert len(waits) == 2 and "ConnectError" in str(refused.value)


def test_a_silent_server_is_a_timeout_then_a_connection_error(scripted: Callable[..., Scripted]) -> None:
    server = scripted("stall", response(200, VALID))
    with sync_client(server, [], NO_RETRIES, timeout=0.2) as client, \
            pytest.raises(KeyledgerConnectionError) as timed_out:
        client.verify("kl_x", "read:data")
    assert "ReadTimeout" in str(timed_out.value) and len(server.requests) == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused(scripted: Callable[..., Scripted]) -> None:
    server = scripted(response(200, VALID), response(200, VALID, {"connection": "close"}), response(200, VALID))
    with sync_client(server, [], NO_RETRIES) as client:
        assert client.verify("kl_x", "read:data").valid
        idle = client._wire._idle[0] if client._wire is not None else None
        assert idle is not None
        idle.shutdown(socket.SHUT_RD)  # as when the server's end closes: the socket reads end of file
        assert client.verify("kl_x", "read:data").valid  # on a new connection, with no retry allowed
        assert client.verify("kl_x", "read:data").valid  # "connection: close" was honoured: a third one
    assert server.connections == 3


async def test_the_async_client_retries_reuses_and_times_out_the_same_way(
        scripted: Callable[..., Scripted]) -> None:
    waits: list[float] = []

    async def record(wait: float) -> None:
        waits.append(wait)

    server = scripted(None, response(503), response(200, VALID), chunked(200, VALID), response(201, KEY))
    async with AsyncKeyledger(server.url, "klvc_x", sleep=record, rng=random.Random(1)) as client:
        assert (await client.verify("kl_x", "read:data")).valid
        assert (await client.verify("kl_x", "read:data")).valid
        assert (await client.create("n")).secret == "kl_secret"
    assert len(waits) == 2 and len(server.requests) == 5 and server.connections == 2
    silent = scripted("stall")
    async with AsyncKeyledger(silent.url, "klvc_x", retry=NO_RETRIES, timeout=0.2) as client:
        with pytest.raises(KeyledgerConnectionError) as timed_out:
            await client.verify("kl_x", "read:data")
    assert "ReadTimeout" in str(timed_out.value)


async def test_an_async_call_cut_short_leaves_no_half_read_connection_behind(
        scripted: Callable[..., Scripted]) -> None:
    server = scripted("stall", response(200, VALID))
    async with AsyncKeyledger(server.url, "klvc_x", retry=NO_RETRIES) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.verify("kl_x", "read:data"), 0.2)  # e.g. the caller's request ended
        assert (await client.verify("kl_x", "read:data")).valid  # answered on a new connection
    assert server.connections == 2


def test_the_async_client_works_from_one_event_loop_after_another(scripted: Callable[..., Scripted]) -> None:
    server = scripted(response(200, VALID), response(200, VALID))
    client = AsyncKeyledger(server.url, "klvc_x", retry=NO_RETRIES)  # made outside any loop, like a module's
    assert asyncio.run(client.verify("kl_x", "read:data")).valid
    assert asyncio.run(client.verify("kl_x", "read:data")).valid  # the first loop's connection is not reused
    asyncio.run(client.aclose())
    assert server.connections == 2


async def test_the_async_client_sees_an_idle_connection_closed_by_the_server(
        scripted: Callable[..., Scripted]) -> None:
    server = scripted(response(200, VALID), response(200, VALID))
    async with AsyncKeyledger(server.url, "klvc_x", retry=NO_RETRIES) as client:
        assert (await client.verify("kl_x", "read:data")).valid
        assert client._wire is not None
        (idle,) = client._wire._idle
        assert idle.transport is not None
        raw = idle.transport.get_extra_info("socket")
        with socket.socket(fileno=os.dup(raw.fileno())) as twin:
            twin.shutdown(socket.SHUT_RD)  # as when the server's end closes: the socket reads end of file
        await until(lambda: idle.closed, timeout=5, what="the client noticing the closed connection")
        assert (await client.verify("kl_x", "read:data")).valid
    assert server.connections == 2



def self_signed(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A certificate for 127.0.0.1 made now (its PEM file, to trust) and a server context serving it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyledger test")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
                   .not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


async def test_https_checks_the_certificate_like_httpx(scripted: Callable[..., Scripted], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cert_file, context = self_signed(tmp_path)
    server = scripted(response(200, VALID), response(200, VALID), tls=context)
    with Keyledger(server.url, "klvc_x", retry=NO_RETRIES) as stranger, \
            pytest.raises(KeyledgerConnectionError) as refused:
        stranger.verify("kl_x", "read:data")  # not in the trust store: never sent
    assert "ConnectError" in str(refused.value) and server.requests == []
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # trusted, as httpx would trust it
    with Keyledger(server.url, "klvc_x", retry=NO_RETRIES) as client:
        assert client.verify("kl_x", "read:data").valid
    async with AsyncKeyledger(server.url, "klvc_x", retry=NO_RETRIES) as async_client:
        assert (await async_client.verify("kl_x", "read:data")).valid
    assert [start for start, _, _ in server.requests] == ["POST /v1/verify HTTP/1.1"] * 2


async def test_calls_in_flight_are_bounded_like_httpx_pool(scripted: Callable[..., Scripted],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "MAX_CONNECTIONS", 1)
    server = scripted(*[response(200, VALID)] * 6)
    async with AsyncKeyledger(server.url, "klvc_x", retry=NO_RETRIES) as client:
        answers = await asyncio.gather(*(client.verify("kl_x", "read:data") for _ in range(3)))
    with Keyledger(server.url, "klvc_x", retry=NO_RETRIES) as sync_client:
        threads = [threading.Thread(target=sync_client.verify, args=("kl_x", "read:data")) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert all(answer.valid for answer in answers) and len(server.requests) == 6
    assert server.connections == 2  # one for the three async calls, one for the three threads


async def test_a_call_waits_for_a_free_connection_no_longer_than_the_pool_timeout(
        scripted: Callable[..., Scripted], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "MAX_CONNECTIONS", 1)
    server = scripted("stall")
    timeout = httpx.Timeout(5.0, pool=0.2)
    async with AsyncKeyledger(server.url, "klvc_x", retry=NO_RETRIES, timeout=timeout) as client:
        stuck = asyncio.ensure_future(client.verify("kl_x", "read:data"))
        await until(lambda: len(server.requests) == 1, timeout=5, what="the first call holding the connection")
        with pytest.raises(KeyledgerConnectionError) as waited:
            await client.verify("kl_x", "read:data")
        assert "PoolTimeout" in str(waited.value)
        stuck.cancel()
    assert server.connections == 1
