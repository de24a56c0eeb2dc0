"""The worker roles beside the API: what each is called, as whom it reaches NATS, what it consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    """One worker role."""

    command: str  # ``keyledger <command>``; also the name its process's log lines and metrics carry
    nats_user: str  # its NATS user (``config.NATS_ROLES``), allowed only what the role needs ("": no NATS at all)
    consumer: str = ""  # its durable JetStream consumer ("": it consumes nothing)
    batch: int = 0  # messages it fetches at once


RELAY = Role("relay", "relay")  # publishes the store's events to NATS
PROJECTOR = Role("projector", "projector", consumer="key-cache-projector", batch=500)  # key events → key_cache
SINK = Role("audit-sink", "sink", consumer="audit-sink", batch=200)  # usage batches → usage_events
WEBHOOKS = Role("webhooks", "")  # notices from the store and the clock → signed deliveries (Postgres only)
WATCH = Role("watch", "watch", consumer="watch", batch=200)  # usage batches → findings
ROLES = {role.command: role for role in (RELAY, PROJECTOR, SINK, WEBHOOKS, WATCH)}  # by command
