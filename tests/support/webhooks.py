"""A webhook receiver for tests: an HTTP server on 127.0.0.1 that checks every delivery with the
``standardwebhooks`` library (the one receivers use), and answers as each test tells it to."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec
from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.server import ApiServer
from tests.support.wait import until_sync

# a server whose webhooks reach the receiver, retried quickly: 50 ms doubling, at most 1 s apart, for 5 s
HOOK_ENV = {"KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "KEYLEDGER_WEBHOOK_RETRY_FIRST_MS": "50",
            "KEYLEDGER_WEBHOOK_RETRY_MAX": "1", "KEYLEDGER_WEBHOOK_RETRY_FOR": "5"}
Answer = Callable[["Received"], int]  # the status to answer a verified delivery with


class Received(msgspec.Struct, kw_only=True):
    """One delivery as it arrived: to which endpoint (the path's last part), its webhook-id, and its body."""

    endpoint: str
    message_id: str
    type: str
    data: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    status: int = 0  # what the receiver answered


def _accept(_: Received) -> int:
    return 200


class Receiver:
    """Receives at ``url(name)``; deliveries that fail the library's check are kept in ``rejected`` (400).

    A request whose body ends before its ``content-length`` (its sender was killed mid-write) is no delivery:
    it is counted in ``cut_short`` and gets no answer, as a real receiver's server would drop it."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.answers: dict[str, Answer] = {}
        self.received: list[Received] = []
        self.rejected: list[tuple[str, str]] = []
        self.cut_short = 0  # requests whose sender went away before the whole body arrived
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request (a test kills workers): nothing arrived
                    with receiver._lock:
                        receiver.cut_short += 1
                    self.close_connection = True
                    return
                status = receiver._handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        """Where the endpoint ``name`` receives."""
        return f"http://127.0.0.1:{self.port}/hooks/{name}"

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        name = path.rsplit("/", 1)[-1]
        secret = self.secrets.get(name)
        if secret is None:
            with self._lock:
                self.rejected.append((name, "no secret for this endpoint yet"))
            return 503
        try:
            payload = Webhook(secret).verify(body, headers)
        except WebhookVerificationError as exc:
            with self._lock:
                self.rejected.append((name, f"{exc}: {headers} {body[:300]!r}"))
            return 400
        got = Received(endpoint=name, message_id=headers["webhook-id"], type=payload["type"], data=payload["data"],
                       headers=headers, body=body)
        got.status = self.answers.get(name, _accept)(got)
        with self._lock:
            self.received.append(got)
        return got.status

    def of(self, name: str, delivered_only: bool = True) -> list[Received]:
        """What endpoint ``name`` received (only what it answered 2xx to, unless ``delivered_only`` is False)."""
        with self._lock:
            return [r for r in self.received if r.endpoint == name and (200 <= r.status < 300 or not delivered_only)]

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()



def register(api: httpx.Client, admin: str, receiver: Receiver, name: str, **body: Any) -> dict[str, Any]:
    """Register the receiver's endpoint ``name`` and give the receiver its secret; the 201 body."""
    answer = api.post("/v1/webhooks", json={"url": receiver.url(name), **body}, headers={"x-api-key": admin})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    receiver.secrets[name] = created["secret"]
    return created


def arrived(receiver: Receiver, name: str, count: int, server: ApiServer) -> list[Received]:
    """The first ``count`` deliveries endpoint ``name`` accepted, once that many arrived."""
    return until_sync(lambda: got if len(got := receiver.of(name)) >= count else [], timeout=30,
                      what=f"{count} deliveries to {name}",
                      explain=lambda: f"received {receiver.of(name, False)}\nrejected {receiver.rejected}\n"
                                      f"{server.log()[-4000:]}")
