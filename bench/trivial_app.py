"""The baseline: a trivial Litestar POST endpoint, served exactly as ``keyledger serve`` serves the API.

``python -m bench.trivial_app PORT`` runs granian with the settings of ``keyledger.services.cli.serve``
(ASGI, 1 worker, no access log, factory). The one route decodes a verify-shaped JSON body
into a msgspec Struct and answers a small JSON dict: the framework and server floor that
``POST /v1/verify`` is compared against.
"""

from __future__ import annotations

import sys

import msgspec
from litestar import Litestar, post


class Body(msgspec.Struct):
    """The same shape as a verify request."""

    key: str
    scope: str
    website_id: str | None = None
    data: str | None = None


@post("/echo", status_code=200)
async def echo(data: Body) -> dict[str, object]:
    """Decode the body, answer a small dict."""
    return {"valid": True, "code": "VALID", "scope": data.scope}


def create_app() -> Litestar:
    """The trivial app (factory, like ``keyledger.services.http.app:app_from_env``)."""
    return Litestar(route_handlers=[echo])


def serve(port: int) -> None:
    """Serve the trivial app with the same granian settings as ``keyledger.services.cli.serve.serve`` (blocks)."""
    from granian import Granian
    from granian.constants import Interfaces

    Granian("bench.trivial_app:create_app", factory=True, address="127.0.0.1", port=port,
            interface=Interfaces.ASGI, workers=1, log_access=False).serve()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
