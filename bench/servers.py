"""Real servers for the HTTP benchmarks: keyledger API replicas and the trivial baseline app.

Every benchmark gets a fresh migrated database and JetStream streams of its own on the
runner's private stack, API processes started like ``keyledger serve`` (the e2e tests'
``ApiServer``), and an admin key whose rate limit (10,000,000/min) never gets in the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg

from bench.client import Client, HttpError
from bench.common import BenchContext, fresh_database
from keyledger.services.config import Settings
from keyledger.services.devstack.stack import stack_status
from keyledger.services.messaging.connection import connect
from tests.support.server import ApiServer, free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
BIG_LIMIT = 10_000_000  # the largest per-key rate limit the service accepts
PRODUCTION_ARGON2 = {"KEYLEDGER_ARGON2_TIME_COST": str(Settings().argon2_time_cost),
                     "KEYLEDGER_ARGON2_MEMORY_KIB": str(Settings().argon2_memory_kib)}
CHEAP_ARGON2 = {"KEYLEDGER_ARGON2_TIME_COST": "1", "KEYLEDGER_ARGON2_MEMORY_KIB": "1024"}


def isolated_settings() -> Settings:
    """Settings with JetStream streams and subjects of their own (like the e2e tests')."""
    tag = uuid.uuid4().hex[:10]
    return Settings(nats_stream=f"KLB_{tag}", nats_subject_prefix=f"klb{tag}.events",
                    usage_stream=f"KLBU_{tag}", usage_subject=f"klb{tag}.usage")


async def nats_url_of(ctx: BenchContext) -> str:
    """The runner's NATS URL: from the context if it carries one, else from the embedded stack
    whose Postgres serves ``ctx.admin_url`` (its data folder holds the stack's ``stack.json``)."""
    given = getattr(ctx, "nats_url", None)
    if isinstance(given, str) and given:
        return given
    admin_url = ctx.admin_url
    async with await psycopg.AsyncConnection.connect(admin_url) as conn:
        row = await (await conn.execute("SHOW data_directory")).fetchone()
    info = stack_status(Path(str(row[0])).parent) if row else None
    if info is None:
        raise RuntimeError(f"no embedded stack found around {row}")
    return info.nats_url


@dataclass(frozen=True)
class Stack:
    """A fresh database and NATS streams of one benchmark."""

    database_url: str
    nats_url: str
    settings: Settings
    work_dir: Path


@contextlib.asynccontextmanager
async def private_stack(ctx: BenchContext) -> AsyncIterator[Stack]:
    """A fresh database and stream names; the streams are deleted afterwards."""
    nats_url = await nats_url_of(ctx)
    settings = isolated_settings()
    with tempfile.TemporaryDirectory(prefix="kl-bench-http-") as work:
        async with fresh_database(ctx.admin_url) as url:
            try:
                yield Stack(url, nats_url, settings, Path(work))
            finally:
                bus = await connect(nats_url, "bench-cleanup")
                for stream in (settings.nats_stream, settings.usage_stream):
                    with contextlib.suppress(Exception):
                        await bus._js.delete_stream(stream)  # no public delete: reach the JetStream context
                await bus.close()


def worker_pids(main_pid: int) -> list[int]:
    """The granian workers under ``main_pid``: forked children with the same command line (not the relay,
    projector or audit sink that ``keyledger serve`` also starts)."""
    main = psutil.Process(main_pid)
    children = [c for c in main.children() if c.cmdline() == main.cmdline() or "spawn_main" in " ".join(c.cmdline())]
    return [int(c.pid) for c in children] or [main_pid]


def background_pids(main_pid: int) -> list[int]:
    """The relay, projector and audit sink processes ``keyledger serve`` supervises."""
    workers = set(worker_pids(main_pid))
    return [int(c.pid) for c in psutil.Process(main_pid).children() if c.pid not in workers]


def worker_pid(main_pid: int) -> int:
    """The (first) granian worker under ``main_pid``."""
    return worker_pids(main_pid)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def listening_pids(*urls: str) -> list[int]:
    """The processes listening on the ports of ``urls`` (the stack's Postgres and NATS servers)."""
    ports = {urlsplit(url).port for url in urls}
    return sorted({c.pid for c in psutil.net_connections(kind="tcp")
                   if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports and c.pid})


def stack_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds used so far by the ``roots`` processes and their current children (Postgres's backends):
    the audit pipeline's share of a load phase, beside the API and its workers."""
    total = 0.0
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += cpu_seconds(process.pid)
    return total


class Api:
    """One running API process, a keep-alive client to it, and the bench admin key."""

    def __init__(self, server: ApiServer) -> None:
        self.server, self.port = server, server.port
        self.client = Client("127.0.0.1", server.port)
        self.admin = ""

    def headers(self) -> dict[str, str]:
        """The admin credentials."""
        return {"x-api-key": self.admin}

    def worker_pid(self) -> int:
        """The pid of the granian worker process that runs the app (for py-spy)."""
        return worker_pid(self.server.process.pid)

    def background_pids(self) -> list[int]:
        """The pids of the relay, projector and audit sink beside the workers."""
        return background_pids(self.server.process.pid)

    def worker_pids(self) -> list[int]:
        """The pids of every granian worker process (``serve --workers N``)."""
        return worker_pids(self.server.process.pid)

    async def create_key(self, name: str, scopes: tuple[str, ...] = ("read:data",), **extra: Any) -> tuple[str, str]:
        """A new key (id, token) with a huge rate limit unless ``rate_limit`` is given."""
        body = {"name": name, "scopes": list(scopes), "rate_limit": BIG_LIMIT, **extra}
        key = await self.client.json("POST", "/v1/keys", body, self.headers(), expect=201)
        return str(key["id"]), str(key["secret"])

    async def create_keys(self, count: int, connections: int = 4, **extra: Any) -> list[tuple[str, str]]:
        """``count`` keys, created over ``connections`` parallel connections."""
        clients = [Client("127.0.0.1", self.port) for _ in range(connections)]

        async def make(client: Client, indexes: range) -> list[tuple[str, str]]:
            out = []
            for i in indexes:
                body = {"name": f"bench {i}", "scopes": ["read:data"], "rate_limit": BIG_LIMIT, **extra}
                key = await client.json("POST", "/v1/keys", body, self.headers(), expect=201)
                out.append((str(key["id"]), str(key["secret"])))
            await client.close()
            return out

        parts = await asyncio.gather(*(make(c, range(i, count, connections)) for i, c in enumerate(clients)))
        return [key for part in parts for key in part]

    async def verify(self, token: str, scope: str = "read:data") -> str:
        """The verify answer's code for ``token``."""
        return str((await self.client.json("POST", "/v1/verify", {"key": token, "scope": scope}, expect=200))["code"])

    async def stop(self) -> None:
        """Stop the process."""
        await self.client.close()
        await asyncio.to_thread(self.server.stop)


SERVER_ENV = "KEYLEDGER_BENCH_SERVER_ENV"


def server_overrides() -> dict[str, str]:
    """Settings every API server of the run gets, from ``KEYLEDGER_BENCH_SERVER_ENV`` (space-separated
    ``NAME=value``): the servers start from a clean environment, so a ``KEYLEDGER_*`` variable set around
    ``python -m bench`` would not reach them. For A/B runs of one setting."""
    overrides: dict[str, str] = {}
    for item in os.environ.get(SERVER_ENV, "").split():
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise SystemExit(f"{SERVER_ENV}: {item!r} is not NAME=value")
        overrides[name] = value
    return overrides


async def start_api(stack: Stack, *, workers: bool = True, env: dict[str, str] | None = None,
                    admin_from: Api | None = None, processes: int = 1, ready_timeout: float = 60.0) -> Api:
    """Start ``keyledger serve`` (``--no-workers`` unless ``workers``) and wait until it is ready.

    The first replica on a fresh database prints the bootstrap key; with it the bench admin
    key is created. Later replicas reuse the admin key of ``admin_from``.
    """
    extra = {"KEYLEDGER_SPOOL_DIR": str(stack.work_dir / f"spool-{time.monotonic_ns()}"),
             "KEYLEDGER_DATA_DIR": str(stack.work_dir), **server_overrides(), **(env or {})}
    server = ApiServer(stack.database_url, stack.nats_url, stack.settings, stack.work_dir, workers=workers,
                       extra_env=extra, processes=processes)
    try:
        await asyncio.to_thread(server.wait_ready, ready_timeout)
    except AssertionError:
        server.stop()
        raise
    api = Api(server)
    if admin_from is not None:
        api.admin = admin_from.admin
    elif server.bootstrap_secret is not None:
        api.admin = server.bootstrap_secret
        _, api.admin = await api.create_key("bench admin", scopes=("admin:apikeys",))
    else:
        server.stop()
        raise HttpError(f"no bootstrap key printed:\n{server.log()[-2000:]}")
    return api


class TrivialServer:
    """``python -m bench.trivial_app PORT`` as a subprocess."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "bench.trivial_app", str(self.port)], cwd=ROOT,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        stdin=subprocess.DEVNULL)

    async def wait_ready(self, timeout: float = 30.0) -> TrivialServer:
        """Until the route answers."""
        deadline = time.monotonic() + timeout
        client = Client("127.0.0.1", self.port)
        while True:
            try:
                status, _ = await client.request("POST", "/echo", {"key": "kl_x", "scope": "read:data"})
                if status == 200:
                    await client.close()
                    return self
            except (OSError, asyncio.IncompleteReadError):
                await client.close()
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("trivial app did not start")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        stop_process(self.process, grace=10)
