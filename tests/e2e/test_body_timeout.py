"""A request whose body stops arriving is answered 408 ``REQUEST_TIMEOUT`` once ``KEYLEDGER_BODY_TIMEOUT``
has passed, and its connection is closed: on the raw verify route and on the routes Litestar serves (a JSON
body; a form, whose dashboard answers with its error page), with a declared length or chunked. Other
connections are served meanwhile. Before, such a request held its connection and handler until the client
went away."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.module_server import module_server
from tests.support.server import ApiServer

DEADLINE = 15.0  # generous: the server's body timeout is 1 s here


@pytest.fixture(scope="module")
def api(servers: tuple[str, str], stack_info: StackInfo | None,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process for the module that waits at most 1 s for a request body (each test stalls a
    connection of its own, which the server closes)."""
    with module_server(servers, stack_info, tmp_path_factory, "body-timeout",
                       extra_env={"KEYLEDGER_BODY_TIMEOUT": "1"}) as server:
        yield server


def stall(server: ApiServer, method_path: str, headers: dict[str, str], sent: bytes) -> socket.socket:
    """A connection that sends the request line, ``headers`` and ``sent`` of the body, then nothing."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    head = "".join(f"{name}: {value}\r\n" for name, value in {"Host": "127.0.0.1", **headers}.items())
    sock.sendall(f"{method_path} HTTP/1.1\r\n{head}\r\n".encode() + sent)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; fails if it has not within ``DEADLINE``."""
    received, deadline = b"", time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"the connection is still open after {DEADLINE:g}s; received so far: {received!r}")


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


CASES = {
    "verify": ("POST /v1/verify", {"Content-Type": "application/json", "Content-Length": "100"},
               b'{"key": "k'),
    "verify-chunked": ("POST /v1/verify", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
                       b'a\r\n{"key": "k\r\n'),
    "create-key": ("POST /v1/keys", {"Content-Type": "application/json", "Content-Length": "100"},
                   b'{"name": "'),
    "dashboard-sign-in": ("POST /dashboard/sign-in",
                          {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "100"},
                          b"api_key=kl"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_body_that_stops_arriving_is_answered_408_and_its_connection_closed(api: ApiServer, admin: str,
                                                                            case: str) -> None:
    method_path, headers, sent = CASES[case]
    if method_path == "POST /v1/keys":
        headers = {**headers, "x-api-key": admin}
    sock = stall(api, method_path, headers, sent)
    with sock, httpx.Client(base_url=api.url, timeout=10) as other:
        assert other.get("/healthz").status_code == 200  # another connection is served meanwhile
        raw = read_until_closed(sock)
    status, response_headers, body = parse(raw)
    assert status == 408, raw
    assert response_headers.get("connection", "").lower() == "close", raw
    if method_path.startswith("POST /dashboard/"):  # the dashboard's error page, for a browser
        assert "the request body did not arrive within 1 s" in body.decode(), raw
    else:
        assert json.loads(body) == {"success": False, "code": "REQUEST_TIMEOUT",
                                    "error": "the request body did not arrive within 1 s"}


def test_a_body_that_arrives_in_pieces_in_time_is_served(api: ApiServer, admin: str) -> None:
    payload = json.dumps({"key": admin, "scope": "admin:apikeys"}).encode()
    sock = stall(api, "POST /v1/verify", {"Content-Type": "application/json", "Content-Length": str(len(payload)),
                                          "Connection": "close"}, payload[:5])
    with sock:
        sock.sendall(payload[5:])
        status, _, body = parse(read_until_closed(sock))
    assert status == 200, body
    assert json.loads(body)["code"] == "VALID"


def test_headers_that_stop_arriving_close_the_connection(api: ApiServer) -> None:
    """Headers get 10 s (granian's own default is 30 s, more than ``DEADLINE``)."""
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=DEADLINE)
    with sock:
        sock.sendall(b"POST /v1/verify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        read_until_closed(sock)
