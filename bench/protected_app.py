"""The middleware benchmark's app: one small GET endpoint, plain or behind keyledger's ASGI middleware.

``python -m bench.protected_app PORT plain|http|inprocess`` serves it with granian (the settings of
``keyledger serve``: ASGI, 1 worker, no access log). ``http``: the middleware asks keyledger over HTTP
(``KEYLEDGER_URL``, ``KEYLEDGER_VERIFY_CREDENTIAL``); ``inprocess``: it asks an ``InProcessVerifier``
started in the app's lifespan (``DATABASE_URL``, ``NATS_URL`` and the streams of ``KEYLEDGER_*``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get

from keyledger.services.config import load_settings
from keyledger.services.inprocess.verifier import InProcessVerifier
from keyledger_client import AsyncKeyledger
from keyledger_client.asgi import KeyledgerMiddleware


@get("/data")
async def data() -> dict[str, Any]:
    """A small JSON answer."""
    return {"ok": True, "rows": [1, 2, 3]}


def create_app() -> Any:
    """The app of the mode in ``BENCH_APP_MODE``."""
    mode = os.environ.get("BENCH_APP_MODE", "plain")
    if mode == "plain":
        return Litestar([data])
    if mode == "http":
        client = AsyncKeyledger(os.environ["KEYLEDGER_URL"], os.environ["KEYLEDGER_VERIFY_CREDENTIAL"])
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
