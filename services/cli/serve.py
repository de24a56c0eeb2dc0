"""``keyledger serve``: migrate, create the bootstrap admin key once, and serve the API with granian."""

from __future__ import annotations

import asyncio
import os
import sys

from keyledger.services.config import Settings
from keyledger.services.keys.bootstrap import bootstrap
from keyledger.services.runtime import Endpoints, open_runtime


async def prepare(settings: Settings) -> Endpoints:
    """Start or find the servers, migrate, bootstrap; returns where the workers find the servers."""
    async with open_runtime(settings, pool_size=2) as runtime:
        made = await bootstrap(runtime.db, runtime.store, runtime.key_service())
        if made.admin is not None:
            sys.stdout.write(
                "\nBootstrap admin key (admin:apikeys, global). It is shown only this once; store it now:\n"
                f"  {made.admin.token}\n"
                f"  id {made.admin.state.key_id}, start {made.admin.state.start}\n\n")
        if made.verify_credential is not None:
            credential_id, secret = made.verify_credential
            sys.stdout.write(
                "Verify credential for your services (Authorization: Bearer <it> on POST /v1/verify). "
                "Shown only this once:\n"
                f"  {secret}\n  id {credential_id}; more with 'keyledger verify-credentials create --name NAME'\n\n")
        sys.stdout.flush()
        return runtime.endpoints


def serve(settings: Settings, workers: bool = True) -> None:
    """Serve the API on ``settings.host:settings.port`` with one granian worker (blocks)."""
    from granian import Granian
    from granian.constants import Interfaces

    endpoints = asyncio.run(prepare(settings))
    os.environ.update(endpoints.environment(), KEYLEDGER_RUN_WORKERS="1" if workers else "0")
    print(f"keyledger API on http://{settings.host}:{settings.port} (OpenAPI at /schema); Ctrl-C stops", flush=True)
    Granian("keyledger.services.http.app:app_from_env", factory=True, address=settings.host, port=settings.port,
            interface=Interfaces.ASGI, workers=1, log_access=False).serve()
