"""``keyledger keys ...``: create, list, show, edit, rotate and revoke from the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import msgspec

from keyledger.domain.errors import KeyNotFound
from keyledger.domain.key import fold
from keyledger.domain.recorded import Metadata
from keyledger.projections.key_cache import apply
from keyledger.services.bootstrap.runtime import Runtime, open_runtime
from keyledger.services.cache.replicas import HEARTBEAT, ReplicaRoll
from keyledger.services.cli.key_import import import_file
from keyledger.services.clock import Clock
from keyledger.services.config import Settings
from keyledger.services.keys.service import CommitBarrier, KeyService
from keyledger.services.keys.views import event_view, join_access, key_view
from keyledger.services.messaging.connection import BusError, connect
from keyledger.services.messaging.replicas import ReplicaChannel


def local_user() -> str:
    """The operating-system user running the CLI (``unknown`` when it cannot be told)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cli_metadata() -> Metadata:
    """Who is acting: the local user, through the CLI, with a fresh request id."""
    return Metadata(actor=f"cli:{local_user()}", user_agent="keyledger-cli", request_id=uuid.uuid4().hex)


def output(args: argparse.Namespace, payload: Any, human: str) -> None:
    """Print ``payload`` as JSON with ``--json``, else the human text."""
    if args.json:
        sys.stdout.write(msgspec.json.encode(payload).decode() + "\n")
    else:
        sys.stdout.write(human.rstrip("\n") + "\n")


def describe(view: dict[str, Any]) -> str:
    """A few readable lines about a key."""
    access = ", ".join(f"{a['resource']}{':' + a['id'] if 'id' in a else ''}={','.join(a['scopes'])}"
                       for a in view["access"])
    return "\n".join([
        f"{view['id']}  {view['start']}...  {view['name']!r}  [{view['status']}]  v{view['version']}",
        f"  organization: {view['organization_id'] or '-'}   expires: {_when(view['expires_at'])}",
        *([f"  description: {view['description']}"] if view["description"] else []),
        *([f"  tags: {', '.join(view['tags'])}"] if view["tags"] else []),
        f"  scopes (global): {', '.join(view['scopes']) or '-'}",
        f"  access: {access or '-'}",
    ])


def _when(value: datetime | None) -> str:
    return value.isoformat() if value else "never"


async def run(args: argparse.Namespace, settings: Settings) -> None:
    """Dispatch one ``keys`` sub-command; one that changes a key returns once every API replica holds the
    change, as the API's own commands do."""
    async with open_runtime(settings, pool_size=2) as runtime:
        if args.action in _READS:
            await _READS[args.action](runtime, args)
            return
        async with replica_barrier(runtime) as barrier:
            if args.action == "import":  # keys made by another key service
                await import_file(runtime.key_service(barrier=barrier), runtime, args, cli_metadata(), output)
                return
            await _CHANGES[args.action](runtime.key_service(barrier=barrier), runtime.clock, args)


@contextlib.asynccontextmanager
async def replica_barrier(rt: Runtime) -> AsyncIterator[CommitBarrier | None]:
    """Wait, after a command, until every API replica announces it holds the command's events (nudging them
    to read the store at once), at most the replicas' own bound (``KEYLEDGER_MAX_STALENESS``; 1 s when that
    is 0), as an API process does. The CLI listens for one announcement round first, so it knows every
    replica on the bus; it never joins the roll itself. Without NATS it says so and returns at once: the
    replicas then see the change when they next read the store (within their staleness bound, or they
    answer UNAVAILABLE)."""
    try:
        bus = await connect(rt.endpoints.nats_url_for("api"), "keyledger-cli", role="api")
    except BusError as exc:
        print(f"warning: {exc}: the API replicas are not waited for", file=sys.stderr)
        yield None
        return
    try:
        channel = ReplicaChannel(bus, rt.settings.replicas_subject)
        roll = ReplicaRoll(channel, lambda: -1, max_wait=float(rt.settings.max_staleness or 1), member=False)
        await channel.listen(roll.heard)
        listening = time.monotonic()

        async def barrier(position: int) -> None:
            await asyncio.sleep(max(0.0, listening + HEAR_EVERY_REPLICA - time.monotonic()))
            behind = await roll.wait_for(position)
            if behind:
                print(f"warning: {len(behind)} API replica(s) did not confirm the change within {roll.max_wait:.0f} s;"
                      " they answer UNAVAILABLE rather than VALID until their store confirms them", file=sys.stderr)

        yield barrier
    finally:
        await bus.close()


async def _create(keys: KeyService, clock: Clock, args: argparse.Namespace) -> None:
    access = join_access(args.scope or [], args.access or [])
    issued = await keys.create(args.name, organization_id=args.org, access=access, expires_at=args.expires,
                               rate_limit=args.rate_limit, metadata=cli_metadata(), description=args.description,
                               tags=args.tag or [])
    view = key_view(issued.state, clock())
    output(args, {**view, "secret": issued.token},
         f"{describe(view)}\n  secret: {issued.token}\n  (shown only once: store it now)")


async def _list(rt: Runtime, args: argparse.Namespace) -> None:
    cache: dict[str, Any] = {}
    async for page in rt.store.read_all():
        for recorded in page:
            apply(cache, recorded.event)
    now = rt.clock()
    views = [key_view(state, now) for state in sorted(cache.values(), key=lambda s: s.created_at)]
    if not args.all:
        views = [view for view in views if view["status"] == "active"]
    lines = [f"{v['id']}  {v['start']}...  {v['status']:<8} v{v['version']:<3} {v['name']}" for v in views]
    output(args, {"items": views}, "\n".join(lines) or "no keys")


async def _show(rt: Runtime, args: argparse.Namespace) -> None:
    state, events = await rt.key_service().history(args.key_id)
    if args.as_of is not None:
        events = [recorded for recorded in events if recorded.event.at <= args.as_of]
        past = fold(recorded.event for recorded in events)
        if past is None:
            raise KeyNotFound(f"key {args.key_id} did not exist at {args.as_of.isoformat()}")
        state = past
    view = key_view(state, args.as_of or rt.clock())
    history = [event_view(recorded) for recorded in events]
    lines = [f"  #{h['version']} {h['recorded_at'].isoformat()} {h['type']} by {h['metadata'].get('actor', '-')}"
             for h in history]
    output(args, {**view, "events": history}, describe(view) + "\n  history:\n" + "\n".join(lines))


async def _edit(keys: KeyService, clock: Clock, args: argparse.Namespace) -> None:
    tags = [] if args.no_tags else args.tag
    state = await keys.change_access(args.key_id, name=args.name, description=args.description, tags=tags,
                                     metadata=cli_metadata())
    view = key_view(state, clock())
    output(args, view, describe(view))


async def _rotate(keys: KeyService, clock: Clock, args: argparse.Namespace) -> None:
    issued = await keys.rotate(args.key_id, grace_seconds=args.grace, metadata=cli_metadata())
    view = key_view(issued.state, clock())
    until = issued.state.previous_valid_until
    note = f"old secret works until {until.isoformat()}" if until else "old secret no longer works"
    output(args, {**view, "secret": issued.token},
         f"{describe(view)}\n  new secret: {issued.token}\n  (shown only once; {note})")


async def _revoke(keys: KeyService, clock: Clock, args: argparse.Namespace) -> None:
    state = await keys.revoke(args.key_id, reason=args.reason, metadata=cli_metadata())
    view = key_view(state, clock())
    output(args, view, f"{describe(view)}\n  revoked: this cannot be undone")


_READS = {"list": _list, "show": _show}
_CHANGES = {"create": _create, "edit": _edit, "rotate": _rotate, "revoke": _revoke}
HEAR_EVERY_REPLICA = 1.5 * HEARTBEAT  # every replica on the bus announces itself within one heartbeat
