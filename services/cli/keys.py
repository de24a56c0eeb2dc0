"""``keyledger keys ...``: create, list, show, edit, rotate and revoke from the command line."""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from datetime import datetime
from typing import Any

import msgspec

from keyledger.domain.errors import KeyNotFound
from keyledger.domain.key import fold
from keyledger.domain.recorded import Metadata
from keyledger.projections.key_cache import apply
from keyledger.services.config import Settings
from keyledger.services.keys.views import event_view, join_access, key_view
from keyledger.services.runtime import Runtime, open_runtime


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
    """Dispatch one ``keys`` sub-command."""
    async with open_runtime(settings, pool_size=2) as runtime:
        await _COMMANDS[args.action](runtime, args)


async def _create(rt: Runtime, args: argparse.Namespace) -> None:
    access = join_access(args.scope or [], args.access or [])
    issued = await rt.key_service().create(args.name, organization_id=args.org, access=access,
                                  expires_at=args.expires, rate_limit=args.rate_limit, metadata=cli_metadata(),
                                  description=args.description, tags=args.tag or [])
    view = key_view(issued.state, rt.clock())
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


async def _edit(rt: Runtime, args: argparse.Namespace) -> None:
    tags = [] if args.no_tags else args.tag
    state = await rt.key_service().change_access(args.key_id, name=args.name, description=args.description,
                                                 tags=tags, metadata=cli_metadata())
    view = key_view(state, rt.clock())
    output(args, view, describe(view))


async def _rotate(rt: Runtime, args: argparse.Namespace) -> None:
    issued = await rt.key_service().rotate(args.key_id, grace_seconds=args.grace, metadata=cli_metadata())
    view = key_view(issued.state, rt.clock())
    until = issued.state.previous_valid_until
    note = f"old secret works until {until.isoformat()}" if until else "old secret no longer works"
    output(args, {**view, "secret": issued.token},
         f"{describe(view)}\n  new secret: {issued.token}\n  (shown only once; {note})")


async def _revoke(rt: Runtime, args: argparse.Namespace) -> None:
    state = await rt.key_service().revoke(args.key_id, reason=args.reason, metadata=cli_metadata())
    view = key_view(state, rt.clock())
    output(args, view, f"{describe(view)}\n  revoked: this cannot be undone")


_COMMANDS = {"create": _create, "list": _list, "show": _show, "edit": _edit, "rotate": _rotate, "revoke": _revoke}
