"""The fault matrix: under verify traffic on two API replicas (valid, unknown and revoked keys) and
commands, each single fault in turn — SIGKILL of an API replica, the relay, the projector, the audit
sink, NATS and Postgres, then a restart — and, checked from the outside afterwards:

- no verify answered VALID for a key after its revoke call returned;
- every usage event of every answered verify is stored exactly once (by request id), with no exception:
  the replicas run the default configuration, no durability setting (a response leaves once its usage
  event is in JetStream or the replica's spool), so even a replica killed with SIGKILL loses none (with
  ``KEYLEDGER_USAGE_DURABLE=0`` such a replica would lose what it had buffered);
- every replica answers every key as the store (a fresh replay) says;
- what each fault cost: the longest gap without an answer, and p99 latency while it lasted.

``make test`` runs the short version (seconds per fault); ``make chaos`` the long one
(``TEST_CHAOS_SECONDS`` per phase) and writes the table to the file ``TEST_CHAOS_RESULTS``
names (``bench/CHAOS.md``).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg
import pytest

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.cli.supervise import ROLES
from keyledger.services.devstack import credentials, nats, postgres
from keyledger.services.devstack.stack import ANY_NAMES, StackInfo, stack_down, stack_up
from tests.support.api import create
from tests.support.pipeline import isolated_settings
from tests.support.server import ApiServer
from tests.support.wait import until_sync

PHASE = float(os.environ.get("TEST_CHAOS_SECONDS", "2"))  # seconds of traffic before, during, after
# Postgres as in production: a commit is on disk when it returns. (The suite's throw-away settings,
# synchronous_commit=off, lose the last commits to a SIGKILL: the sink's acked batches among them.)
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
FAULTS = ("api-replica", "relay", "projector", "audit-sink", "nats", "postgres")


@dataclass
class Answer:
    server: int
    key: str
    sent: float
    received: float
    status: int  # 0: no HTTP answer (connection refused, timeout)
    code: str
    request_id: str


@dataclass
class World:
    """The stack, the two replicas, the keys and everything the load saw."""

    stack: StackInfo
    data_dir: Path
    log_dir: Path
    endpoints: Endpoints
    settings: object
    servers: list[ApiServer] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    admin: str = ""
    secrets: dict[str, str] = field(default_factory=dict)  # key id -> secret
    revoked: dict[str, float] = field(default_factory=dict)  # key id -> when its revoke call returned
    revoke_ms: list[float] = field(default_factory=list)  # how long each successful revoke call took
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    killed: list[tuple[int, float]] = field(default_factory=list)  # (server index, when) of killed replicas

    def start_server(self, workers: bool) -> ApiServer:
        server = ApiServer(self.stack.admin_database_url, self.stack.nats_url, self.settings, self.log_dir,  # type: ignore[arg-type]
                           workers=workers, extra_env={**self.endpoints.environment(), "KEYLEDGER_MAX_STALENESS": "5"})
        return server.wait_ready()

    def state(self) -> dict[str, object]:
        return json.loads((self.data_dir / "stack.json").read_text())  # type: ignore[no-any-return]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once."""
    root = psutil.Process(pid)
    everyone = [root, *root.children(recursive=True)]
    for process in everyone:
        process.kill()
    psutil.wait_procs(everyone, timeout=10)


def role_process(server: ApiServer, role: str) -> psutil.Process:
    for child in psutil.Process(server.process.pid).children():
        if child.cmdline()[-1:] == [role] and child.status() != psutil.STATUS_ZOMBIE:
            return child
    raise AssertionError(f"no {role} process under {server.process.pid}")


def load(world: World, stop: threading.Event) -> None:
    """Verify round-robin over the keys (and an unknown one) on both replicas, recording every answer."""
    clients: dict[str, httpx.Client] = {}
    unknown = "kl_" + "Z" * 48
    n = 0
    while not stop.is_set():
        n += 1
        with world.lock:
            index = n % len(world.urls)
            url = world.urls[index]
            keys = list(world.secrets.items())
        key_id, secret = keys[n % len(keys)] if n % 7 else ("unknown", unknown)
        client = clients.setdefault(url, httpx.Client(base_url=url, timeout=5))
        request_id = uuid.uuid4().hex
        sent = time.monotonic()
        try:
            response = client.post("/v1/verify", json={"key": secret, "scope": "read:data"},
                                   headers={"x-request-id": request_id})
            status, code = response.status_code, response.json().get("code", "")
        except (httpx.HTTPError, ValueError):
            status, code = 0, ""
        with world.lock:
            world.answers.append(Answer(index, key_id, sent, time.monotonic(), status, code, request_id))
    for client in clients.values():
        client.close()


def commands(world: World, client: httpx.Client, deadline: float) -> None:
    """Until ``deadline``: create a key, let the load verify it a little, revoke it (recording when the
    revoke returned). Refusals during an outage (503) are fine; they change nothing."""
    while time.monotonic() < deadline:
        try:
            made = client.post("/v1/keys", json={"name": "fault", "scopes": ["read:data"], "rate_limit": 1_000_000},
                               headers={"x-api-key": world.admin})
        except httpx.HTTPError:
            continue
        if made.status_code != 201:
            time.sleep(0.2)
            continue
        key = made.json()
        with world.lock:
            world.secrets[key["id"]] = key["secret"]
        time.sleep(PHASE / 4)
        while time.monotonic() < deadline + 30:
            try:
                sent = time.monotonic()
                revoked = client.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": world.admin})
            except httpx.HTTPError:
                continue
            if revoked.status_code == 200:
                with world.lock:
                    world.revoked[key["id"]] = returned = time.monotonic()
                    world.revoke_ms.append((returned - sent) * 1000)
                break
            time.sleep(0.2)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    data_dir = tmp_path / "stack"
    stack = stack_up(data_dir, pg_settings=DURABLE, names=ANY_NAMES)
    endpoints = Endpoints(database_url=stack.database_url, admin_database_url=stack.admin_database_url,
                          nats_url=stack.nats_url, nats_role_urls=stack.nats_role_urls)
    w = World(stack, data_dir, tmp_path, endpoints, isolated_settings())
    try:
        w.servers = [w.start_server(True), w.start_server(False)]
        w.urls = [s.url for s in w.servers]
        assert w.servers[0].bootstrap_secret is not None
        w.admin = w.servers[0].bootstrap_secret
        with httpx.Client(base_url=w.urls[0], timeout=10) as client:
            key = create(client, w.admin, scopes=["read:data"], rate_limit=1_000_000)
        w.secrets[key["id"]] = key["secret"]
        yield w
    finally:
        for server in w.servers:
            server.stop()
        stack_down(data_dir)


def inject(world: World, fault: str) -> Callable[[], object]:
    """Cause ``fault`` now; returns what restarts the failed part."""
    if fault == "api-replica":
        victim = world.servers[1]
        world.killed.append((1, time.monotonic()))
        kill_tree(victim.process.pid)

        def restart_replica() -> None:
            replacement = world.start_server(False)
            world.servers[1] = replacement
            with world.lock:
                world.urls[1] = replacement.url
        return restart_replica
    if fault in ROLES:
        role_process(world.servers[0], fault).kill()
        return lambda: until_sync(lambda: role_process(world.servers[0], fault).is_running(), timeout=30,
                                  what=f"the {fault} to be restarted by its supervisor")
    if fault == "nats":
        nats.stop_nats(world.state()["nats_pid"], world.data_dir)  # SIGTERM then SIGKILL
        return lambda: nats.start_nats(world.data_dir, credentials.load_or_create(world.data_dir), ANY_NAMES,
                                       port=world.stack.nats_port)
    kill_tree(int(world.state()["pg_pid"]))  # type: ignore[call-overload]
    return lambda: postgres.start_postgres(world.data_dir, DURABLE, port=world.stack.pg_port)


@dataclass(frozen=True)
class Cost:
    fault: str
    longest_gap: float  # seconds without a 200 from any replica that was up
    p99_ms: float  # of answered verifies between the fault and its recovery


def cost(world: World, fault: str, start: float, end: float) -> Cost:
    answered = sorted(a.received for a in world.answers if start <= a.sent <= end and a.status == 200)
    gaps = [b - a for a, b in zip([start, *answered], [*answered, end], strict=True)]
    latencies = sorted((a.received - a.sent) * 1000 for a in world.answers
                       if start <= a.sent <= end and a.status == 200)
    p99 = percentile(latencies, 0.99)
    return Cost(fault, max(gaps), p99)


def stored_usage(world: World) -> dict[str, int]:
    with psycopg.connect(world.stack.admin_database_url) as conn:
        rows = conn.execute("SELECT request_id, count(*) FROM usage_events WHERE action = 'verify' "
                            "GROUP BY request_id").fetchall()
    return {str(r): int(n) for r, n in rows}


@pytest.mark.timeout(600)
def test_every_single_fault_under_load(world: World) -> None:
    stop = threading.Event()
    traffic = threading.Thread(target=load, args=(world, stop), daemon=True)
    traffic.start()
    costs = []
    phases: list[tuple[str, float, float]] = []
    try:
        with httpx.Client(base_url=world.urls[0], timeout=10) as client:
            for fault in FAULTS:
                commands(world, client, time.monotonic() + PHASE)  # before
                started = time.monotonic()
                restart = inject(world, fault)
                commands(world, client, time.monotonic() + PHASE)  # during
                restart()
                until_sync(lambda: all(httpx.get(f"{u}/readyz", timeout=2).status_code == 200 for u in world.urls),
                           timeout=60, what=f"both replicas ready after {fault}")
                commands(world, client, time.monotonic() + PHASE)  # after
                costs.append(cost(world, fault, started, time.monotonic()))
                phases.append((fault, started - PHASE, time.monotonic()))
    finally:
        stop.set()
        traffic.join(timeout=30)

    answers = list(world.answers)
    assert sum(a.status == 200 for a in answers) > 100, "the load generator hardly got answers"
    # 1. no VALID for a key sent after its revoke call returned, by any replica: a revoke returns once every
    # replica holds it (or, cut off from the bus, has had time to read it from the store)
    late_valid = [(a.sent - world.revoked[a.key], a) for a in answers
                  if a.code == "VALID" and a.key in world.revoked and a.sent > world.revoked[a.key]]
    assert not late_valid, sorted(late_valid, key=lambda x: -x[0])[:3]

    # 2. every answered verify's usage event, exactly once (within a stated time after recovery)
    answered = {a.request_id: a for a in answers if a.status == 200}

    def all_stored() -> dict[str, int]:
        stored = stored_usage(world)
        return stored if all(rid in stored for rid in answered) else {}

    def which() -> str:
        stored = stored_usage(world)
        missing = [a for rid, a in answered.items() if rid not in stored]
        by_phase = {fault: sum(start <= a.received <= end for a in missing) for fault, start, end in phases}
        with psycopg.connect(world.stack.admin_database_url) as conn:
            dead = conn.execute("SELECT count(*) FROM usage_dead_letters WHERE "
                                + " OR ".join(["position(%s::bytea in body) > 0"] * len(missing[:50]) or ["false"]),
                                [a.request_id.encode() for a in missing[:50]]).fetchone()
        before_kill = [min((at - a.received for server, at in world.killed if server == a.server and at >= a.sent),
                           default=None) for a in missing[:5]]
        return (f"{len(missing)} of {len(answered)} missing ({dead} dead letters among the first 50); "
                f"seconds from answer to its replica's kill (first five): {before_kill}; "
                f"by fault window: {by_phase}; by replica: "
                f"{[sum(a.server == i for a in missing) for i in range(2)]}; first: {missing[:3]}")

    stored = until_sync(all_stored, timeout=60, interval=0.5, what="every answered verify's usage event",
                        explain=which)
    assert all(n == 1 for rid, n in stored.items() if rid in answered), "a usage event stored twice"

    # 3. every replica answers every key as the store says (a replay of the events)
    with psycopg.connect(world.stack.admin_database_url) as conn:
        truth = {str(k): revoked for k, revoked in conn.execute(
            "SELECT stream_id, bool_or(type = 'key.revoked') FROM events GROUP BY stream_id").fetchall()}
    for url in world.urls:
        with httpx.Client(base_url=url, timeout=10) as client:
            for key_id, secret in world.secrets.items():
                code = client.post("/v1/verify", json={"key": secret, "scope": "read:data"}).json()["code"]
                assert code == ("REVOKED" if truth[key_id] else "VALID"), (url, key_id, code)

    report(costs, len(answered), world.revoke_ms)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nan when there are none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def report(costs: list[Cost], answered: int, revokes: list[float]) -> None:
    lines = ["| fault (SIGKILL, then restart) | longest gap without an answer | p99 verify latency meanwhile |",
             "| --- | ---: | ---: |"]
    lines += [f"| {c.fault} | {c.longest_gap:.2f} s | {c.p99_ms:.1f} ms |" for c in costs]
    lines.append(f"\n{answered} verifies answered, every usage event stored once (replicas in the default "
                 f"configuration, also the one killed); {PHASE:.0f} s per phase. "
                 f"No VALID answer after a revoke returned; the {len(revokes)} revokes took (until every replica "
                 f"held them) median {percentile(revokes, 0.5):.1f} ms, p99 {percentile(revokes, 0.99):.1f} ms, "
                 f"max {max(revokes, default=0):.1f} ms.")
    table = "\n".join(lines)
    print("\n" + table)
    target = os.environ.get("TEST_CHAOS_RESULTS")
    if target:
        Path(target).write_text(
            "# The fault matrix (`make chaos`)\n\nWritten by `tests/faults/test_matrix.py`.\n\n" + table + "\n")
