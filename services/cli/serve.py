"""``keyledger serve``: migrate, create the bootstrap admin key once, and serve the API with granian."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keyledger.services.bootstrap.runtime import Endpoints, open_runtime
from keyledger.services.cli.supervise import ROLES, Supervisor
from keyledger.services.config import Settings
from keyledger.services.keys.bootstrap import bootstrap
from keyledger.services.observe.metrics import prepare_multiprocess
from keyledger.services.parent import PARENT_ENV
from keyledger.services.signals import SignalPipe

if TYPE_CHECKING:
    from keyledger.services.cli.granian_server import KeyledgerGranian

log = logging.getLogger("keyledger.serve")

WORKER_STOP_SECONDS = 5  # an API worker still running this long after SIGTERM is killed (granian's kill timeout)
# a request's headers must arrive within this long, and an idle keep-alive connection is closed after it (hyper's
# HTTP/1 header read timeout, granian's default 30 s); the body has KEYLEDGER_BODY_TIMEOUT (services.http.body_deadline)
HEADER_TIMEOUT_MS = 10_000
# granian's own lines (listening, workers spawned and stopped) go to this process's log handler, in its format
# (services.observe.logs), rather than to stdout in granian's: a terminal shows one kind of line, a pipe only JSON
GRANIAN_LOGGING = {"version": 1, "disable_existing_loggers": False,
                   "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}}}


async def prepare(settings: Settings, bootstrap_keys: bool = True) -> Endpoints:
    """Start or find the servers, migrate, bootstrap (unless not ``bootstrap_keys``); returns where the
    workers find the servers."""
    async with open_runtime(settings, pool_size=2) as runtime:
        if not bootstrap_keys:
            return runtime.endpoints
        made = await bootstrap(runtime.db, runtime.store, runtime.key_service())
        if made.admin is not None:
            sys.stdout.write(
                "\nBootstrap admin key (admin:apikeys, global). It is shown only this once; store it now:\n"
                f"  {made.admin.token}\n"
                f"  id {made.admin.state.key_id}, start {made.admin.state.start}\n"
                f"  Sign in with it at http://{settings.host}:{settings.port}/dashboard (Settings → API Keys)\n\n")
        if made.verify_credential is not None:
            credential_id, secret = made.verify_credential
            sys.stdout.write(
                "Verify credential for your services (Authorization: Bearer <it> on POST /v1/verify). "
                "Shown only this once:\n"
                f"  {secret}\n  id {credential_id}; more with 'keyledger verify-credentials create --name NAME'\n\n")
        sys.stdout.flush()
        return runtime.endpoints


def serve(settings: Settings, workers: bool = True, processes: int = 1, roles: Sequence[str] = ROLES) -> None:
    """Serve the API on ``settings.host:settings.port`` with ``processes`` granian workers (blocks); with
    ``workers``, the worker ``roles`` (by default all: relay, projector, audit sink, watch, webhooks) run beside
    them as supervised processes.

    SIGINT or SIGTERM stops everything within seconds: before the servers are prepared it ends the process
    at once (nothing runs beside it yet); from then on the handlers only note the signal
    (:class:`~keyledger.services.signals.SignalPipe`) and a thread stops granian and, meanwhile, the
    supervised processes. An API worker that does not stop within ``WORKER_STOP_SECONDS`` is killed."""
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    from keyledger.services.cli.granian_server import KeyledgerGranian

    endpoints = asyncio.run(prepare(settings))
    signals = SignalPipe().install()  # before any child exists: no signal goes unnoticed from here on
    # the API workers (and the supervised processes) end with this process, even when it is SIGKILLed
    os.environ.update(endpoints.environment(), KEYLEDGER_RUN_WORKERS="0", **{PARENT_ENV: str(os.getpid())})
    supervisor = Supervisor(roles).start() if workers else None
    metrics_dir = settings.data_path("metrics", str(os.getpid()))
    if processes > 1:  # one worker keeps its metrics in memory (cheaper: no memory-mapped files)
        # after the supervisor copied the environment: only the API workers share the metrics folder. They
        # are spawned, not forked, so each imports prometheus_client anew and sees the folder (a fork would
        # inherit this process's in-memory metrics)
        prepare_multiprocess(metrics_dir)
        multiprocessing.set_start_method("spawn", force=True)
    log.info("keyledger API on http://%s:%d (dashboard at /dashboard, OpenAPI at /schema), %d worker process%s; "
             "Ctrl-C stops", settings.host, settings.port, processes, "es" if processes > 1 else "")
    server = KeyledgerGranian("keyledger.services.http.app:app_from_env", factory=True, address=settings.host,
                              port=settings.port, interface=Interfaces.ASGI, workers=processes, log_access=False,
                              http1_settings=HTTP1Settings(header_read_timeout=HEADER_TIMEOUT_MS),
                              workers_kill_timeout=WORKER_STOP_SECONDS, log_dictconfig=GRANIAN_LOGGING,
                              signals=signals)
    threading.Thread(target=_act_on_signals, args=(signals, server, supervisor), name="keyledger-signals",
                     daemon=True).start()
    try:
        if signals.received is None:  # a signal that came earlier makes the serve loop return at once anyway
            server.serve()
    finally:
        if supervisor is not None:
            supervisor.stop()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _act_on_signals(signals: SignalPipe, server: KeyledgerGranian, supervisor: Supervisor | None) -> None:
    """What serve's signal handlers only note, done in a thread: SIGHUP respawns the API workers; SIGINT or
    SIGTERM stops granian (its serve loop stops the API workers) and, at the same time, the supervised
    processes."""
    while True:
        for number in signals.wait():
            if number == signal.SIGHUP:
                server.reload()
                continue
            server.interrupt()
            if supervisor is not None:
                supervisor.stop()
            return
