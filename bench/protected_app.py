"""The middleware benchmark's apps: one small GET endpoint, plain or behind keyledger's ASGI middleware;
and ``examples/protected_service.py`` as it is, and unprotected.

``python -m bench.protected_app PORT MODE`` serves it with granian (the settings of ``keyledger serve``:
ASGI, 1 worker, no access log). ``plain``: no middleware. ``http``: the middleware asks keyledger over HTTP
(``KEYLEDGER_URL``, ``KEYLEDGER_VERIFY_CREDENTIAL``) with the SDK's transport; ``http-httpx``: the same on
httpx (the SDK's transport before); ``inprocess``: it asks an ``InProcessVerifier`` started in the app's
lifespan (``DATABASE_URL``, ``NATS_URL`` and the streams of ``KEYLEDGER_*``). ``example``: the example
service (Litestar plugin and guard over HTTP); ``example-httpx``: its client on httpx; ``example-plain``: its
endpoint without the guard.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from litestar import Litestar, Request, get

from keyledger.services.config import load_settings
from keyledger.services.inprocess.verifier import InProcessVerifier
from keyledger_client import AsyncKeyledger
from keyledger_client.asgi import KeyledgerMiddleware
from keyledger_client.litestar import KeyledgerPlugin

MODES = ("plain", "http", "http-httpx", "inprocess", "example-plain", "example", "example-httpx")


@get("/data")
async def data() -> dict[str, Any]:
    """A small JSON answer."""
    return {"ok": True, "rows": [1, 2, 3]}


@get("/websites/{website_id:str}/stats")
async def open_stats(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The example service's endpoint without its guard."""
    return {"website": request.path_params["website_id"], "key_id": None}


def httpx_client() -> AsyncKeyledger:
    """A verify client whose calls all go through httpx."""
    return AsyncKeyledger(os.environ["KEYLEDGER_URL"], os.environ["KEYLEDGER_VERIFY_CREDENTIAL"],
                          transport=httpx.AsyncHTTPTransport())


def example_app(mode: str) -> Any:
    """``examples/protected_service.py``'s app (its client on httpx for ``example-httpx``)."""
    if mode == "example-plain":
        return Litestar([open_stats])
    from examples import protected_service

    if mode == "example-httpx":
        protected_service.app.plugins.get(KeyledgerPlugin).verifier = httpx_client()
    return protected_service.app


def create_app() -> Any:
    """The app of the mode in ``BENCH_APP_MODE``."""
    mode = os.environ.get("BENCH_APP_MODE", "plain")
    if mode == "plain":
        return Litestar([data])
    if mode.startswith("example"):
        return example_app(mode)
    if mode in ("http", "http-httpx"):
        client = AsyncKeyledger(os.environ["KEYLEDGER_URL"], os.environ["KEYLEDGER_VERIFY_CREDENTIAL"]) \
            if mode == "http" else httpx_client()
        return KeyledgerMiddleware(Litestar([data]), verifier=client, scope="read:data")
    settings = load_settings()
    assert settings.nats_url and settings.database_url
    local = InProcessVerifier(nats_url=settings.nats_url, database_url=settings.database_url, settings=settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with local:
            yield

    return KeyledgerMiddleware(Litestar([data], lifespan=[lifespan]), verifier=local, scope="read:data")


def serve(port: int, mode: str) -> None:
    """Serve the app of ``mode`` (blocks)."""
    from granian import Granian
    from granian.constants import Interfaces

    os.environ["BENCH_APP_MODE"] = mode
    Granian("bench.protected_app:create_app", factory=True, address="127.0.0.1", port=port,
            interface=Interfaces.ASGI, workers=1, log_access=False).serve()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
