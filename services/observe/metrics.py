"""Prometheus metrics of every process kind, and how each process exposes them.

All metric objects live here (the only module that imports ``prometheus_client``), so their names are
in one place (docs/operations.md, "Metrics", lists them). Recording is cheap on purpose: the verify hot
path does one counter increment and one histogram observation, through children resolved once
(no ``labels()`` lookup per request).

API workers answer ``GET /metrics`` themselves. Under ``keyledger serve --workers N`` the workers are
separate processes: ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before they start,
so every worker writes its samples to memory-mapped files there and a scrape of any worker reads all
of them (counters and histograms summed over the workers, gauges as documented per metric). The
relay, projector and audit sink serve their own registry on a port of their own
(:func:`serve_worker_metrics`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("keyledger.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
VERIFY_CODES = ("VALID", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "FORBIDDEN", "RATE_LIMITED", "UNAVAILABLE")
_FAST = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0)
_SLOW = (.005, .01, .025, .05, .1, .25, .5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# -- API workers ---------------------------------------------------------------------------------------
VERIFY_ANSWERS = Counter("keyledger_verify_answers_total", "POST /v1/verify answers (200s), by verdict code",
                         ["code"])
VERIFY_SECONDS = Histogram("keyledger_verify_seconds", "Time to answer POST /v1/verify (200s), in the handler",
                           buckets=_FAST)
COMMAND_SECONDS = Histogram("keyledger_command_seconds", "Time to answer a key command, by command and status class",
                            ["command", "status"], buckets=_SLOW)
RATE_DECISIONS = Counter("keyledger_rate_limit_decisions_total",
                         "Per-key rate-limit decisions (verify and authenticated calls)", ["decision"])
ARGON2_PENDING = Gauge("keyledger_argon2_pending", "argon2 checks and hashes waiting or running",
                       multiprocess_mode="livesum")
ARGON2_REFUSED = Counter("keyledger_argon2_refused_total", "argon2 work refused because the queue was full")
ARGON2_WAIT = Histogram("keyledger_argon2_seconds", "Time an argon2 check took, queueing included", buckets=_SLOW)
CACHE_POSITION = Gauge("keyledger_cache_position", "Global event position the key cache has applied "
                       "(the lowest of the workers)", multiprocess_mode="livemin")
CACHE_CONFIRMED_AGE = Gauge("keyledger_cache_confirmed_age_seconds", "How far the key cache may lag behind the "
                            "store: seconds since the store last confirmed it holds nothing newer (the highest of the "
                            "workers)", multiprocess_mode="livemax")
CACHE_KEYS = Gauge("keyledger_cache_keys", "Keys in the key cache", multiprocess_mode="livemax")
USAGE_BUFFERED = Gauge("keyledger_usage_buffered", "Usage events in memory, not yet published",
                       multiprocess_mode="livesum")
USAGE_EVENTS = Counter("keyledger_usage_events_total", "Usage events leaving the API: published to NATS, spooled "
                       "to disk (NATS away) or dropped (spool full)", ["outcome"])
USAGE_SPOOL_BYTES = Gauge("keyledger_usage_spool_bytes", "Bytes of usage batches waiting in the spool folder",
                          multiprocess_mode="livemax")
NATS_CONNECTED = Gauge("keyledger_nats_connected", "1 while this process is connected to NATS (the lowest of the "
                       "workers)", ["process"], multiprocess_mode="livemin")
POSTGRES_UP = Gauge("keyledger_postgres_up", "1 while this process reaches Postgres (the lowest of the workers)",
                    ["process"], multiprocess_mode="livemin")

# -- relay, projector, audit sink ----------------------------------------------------------------------
RELAY_PUBLISHED = Counter("keyledger_relay_published_total", "Events the relay published to JetStream")
RELAY_BATCH = Histogram("keyledger_relay_batch_events", "Events per page the relay published", buckets=_BATCH)
RELAY_POSITION = Gauge("keyledger_relay_position", "Global position the relay has published up to",
                       multiprocess_mode="livemax")
RELAY_LAG = Gauge("keyledger_relay_lag_events", "Stored events not yet published by the relay",
                  multiprocess_mode="livemax")
CONSUMED = Counter("keyledger_consumer_messages_total", "Messages a worker consumed from JetStream", ["worker"])
CONSUMER_BATCH = Histogram("keyledger_consumer_batch_messages", "Messages per fetched batch", ["worker"],
                           buckets=_BATCH)
CONSUMER_LAG = Gauge("keyledger_consumer_lag_messages", "Messages of the stream the worker has not fetched yet "
                     "(as of its last batch)", ["worker"], multiprocess_mode="livemax")
CONSUMER_SECONDS = Histogram("keyledger_consumer_batch_seconds", "Time to store and ack one batch", ["worker"],
                             buckets=_SLOW)
SINK_STORED = Counter("keyledger_sink_stored_events_total", "Usage events the audit sink stored in Postgres")
SINK_REJECTED = Counter("keyledger_sink_rejected_total", "Usage messages or events the sink set aside "
                        "(malformed messages, dead letters)", ["why"])

# children resolved once: the hot path pays for an increment, not for a label lookup
VERIFY_BY_CODE = {code: VERIFY_ANSWERS.labels(code) for code in VERIFY_CODES}
RATE_ALLOWED, RATE_REFUSED = RATE_DECISIONS.labels("allowed"), RATE_DECISIONS.labels("refused")
USAGE_PUBLISHED, USAGE_SPOOLED, USAGE_DROPPED = (USAGE_EVENTS.labels(o) for o in ("published", "spooled", "dropped"))


def answered(code: str, seconds: float) -> None:
    """One verify answer with ``code`` that took ``seconds``."""
    counter = VERIFY_BY_CODE.get(code)
    (counter if counter is not None else VERIFY_ANSWERS.labels(code)).inc()
    VERIFY_SECONDS.observe(seconds)


def registry() -> CollectorRegistry:
    """The registry a scrape reads: every worker's samples in multiprocess mode, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged
    from prometheus_client import REGISTRY

    return REGISTRY


def exposition(refresh: Callable[[], None] | None = None) -> bytes:
    """The text exposition of :func:`registry` (after ``refresh`` updates this process's gauges)."""
    if refresh is not None:
        refresh()
    return generate_latest(registry())


def prepare_multiprocess(folder: Path) -> None:
    """Make ``folder`` the (empty) multiprocess folder of the API workers started after this call."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(folder)


def process_exited(pid: int) -> None:
    """Forget a dead worker's live gauges (multiprocess mode only)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve_worker_metrics(role: str, base_port: int | None, host: str = "127.0.0.1") -> int:
    """Serve this worker process's metrics over HTTP at ``/metrics``; returns the port.

    ``base_port`` (``KEYLEDGER_METRICS_PORT``): relay on it, projector on +1, audit sink on +2, webhooks on +3,
    watch on +4; None: a free port chosen by the system, logged at start.
    """
    offset = {"relay": 0, "projector": 1, "audit-sink": 2, "webhooks": 3, "watch": 4}.get(role, 0)
    port = 0 if base_port is None else base_port + offset
    server, _ = start_http_server(port, addr=host, registry=_own_registry())
    chosen = int(server.server_address[1])
    log.info("metrics of %s on http://%s:%d/metrics", role, host, chosen)
    return chosen


def _own_registry() -> CollectorRegistry:
    """A worker's registry: its own samples, even when it inherited a multiprocess folder."""
    from prometheus_client import REGISTRY

    return REGISTRY
