"""``keyledger webhooks create | list | show | delete | deliveries | enable | disable``: webhook endpoints from
the command line, as a global admin (``keyledger webhooks`` alone runs the worker role)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

import msgspec

from keyledger.services.bootstrap.runtime import open_runtime
from keyledger.services.bootstrap.webhooks import webhook_service
from keyledger.services.cli.keys import local_user, output
from keyledger.services.config import Settings
from keyledger.services.storage.webhooks import Delivery, Endpoint
from keyledger.services.webhooks.endpoints import WebhookService


def endpoint_view(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as the API shows it (never its secret)."""
    return {"id": endpoint.id, "url": endpoint.url, "events": list(endpoint.event_types),
            "description": endpoint.description, "organization_id": endpoint.organization_id,
            "status": endpoint.status, "created_at": endpoint.created_at}


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    """One delivery as the API shows it."""
    return {"event_id": delivery.message_id, "type": delivery.type, "position": delivery.position,
            "attempts": delivery.attempts, "last_status_code": delivery.last_status, "last_error": delivery.last_error,
            "next_attempt_at": delivery.next_attempt_at, "delivered_at": delivery.delivered_at}


def _when(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "-"


def _line(view: dict[str, Any]) -> str:
    events = "all events" if len(view["events"]) > 4 else ", ".join(view["events"])
    return (f"{view['id']}  [{view['status']}]  {view['url']}  ({events}; organization "
            f"{view['organization_id'] or 'all'})" + (f"  {view['description']}" if view["description"] else ""))


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch one ``webhooks`` sub-command; returns the exit code."""
    async with open_runtime(settings, pool_size=1) as rt:
        service = webhook_service(rt.db, settings, rt.clock)
        await _ACTIONS[args.action](service, args)
    return 0


async def _create(service: WebhookService, args: argparse.Namespace) -> None:
    endpoint, secret = await service.register(args.url, args.event, args.description, admin_organization=None,
                                              organization_id=args.org, created_by=f"cli:{local_user()}")
    view = endpoint_view(endpoint)
    output(args, {**view, "secret": secret},
           f"{_line(view)}\n  signing secret: {secret}\n  (shown only once: give it to the receiver now)")


async def _list(service: WebhookService, args: argparse.Namespace) -> None:
    views = [endpoint_view(e) for e in await service.listed(None)]
    output(args, {"items": views}, "\n".join(_line(v) for v in views) or "no webhook endpoints")


async def _show(service: WebhookService, args: argparse.Namespace) -> None:
    view = endpoint_view(await service.get(args.endpoint_id, None))
    output(args, view, _line(view))


async def _delete(service: WebhookService, args: argparse.Namespace) -> None:
    await service.delete(args.endpoint_id, None)
    output(args, {"id": args.endpoint_id, "deleted": True}, f"webhook endpoint {args.endpoint_id} deleted")


async def _deliveries(service: WebhookService, args: argparse.Namespace) -> None:
    views = [delivery_view(d) for d in await service.deliveries(args.endpoint_id, None, limit=args.limit)]
    lines = [f"{v['event_id']}  {v['type']:<18} attempts {v['attempts']:<3} last {v['last_status_code'] or '-'}  "
             f"delivered {_when(v['delivered_at'])}  next {_when(v['next_attempt_at'])}"
             + (f"  ({v['last_error']})" if v["last_error"] and not v["delivered_at"] else "") for v in views]
    output(args, {"items": msgspec.to_builtins(views)}, "\n".join(lines) or "no deliveries yet")


async def _status(service: WebhookService, args: argparse.Namespace) -> None:
    endpoint = await service.set_status(args.endpoint_id, "active" if args.action == "enable" else "disabled", None)
    output(args, endpoint_view(endpoint), _line(endpoint_view(endpoint)))


_ACTIONS = {"create": _create, "list": _list, "show": _show, "delete": _delete, "deliveries": _deliveries,
            "enable": _status, "disable": _status}


def add_parser(groups: argparse._SubParsersAction, json_flag: argparse.ArgumentParser,  # type: ignore[type-arg]
               parser_class: type[argparse.ArgumentParser]) -> None:
    """The ``webhooks`` command group (no action: run the webhooks worker)."""
    group = groups.add_parser("webhooks", help="webhook endpoints (Standard Webhooks); alone: run the webhooks "
                                               "worker (feeder, expiry checker, dispatcher)")
    actions = group.add_subparsers(dest="action", required=False, parser_class=parser_class)
    create = actions.add_parser("create", parents=[json_flag], help="register an endpoint; prints its secret once")
    create.add_argument("--url", required=True, help="https:// (or http://) URL of a public address")
    create.add_argument("--event", action="append", metavar="TYPE", help="an event type, e.g. key.revoked "
                        "(repeatable; default: every type)")
    create.add_argument("--description", default="")
    create.add_argument("--org", help="receive only this organization's events (default: every organization's)")
    actions.add_parser("list", parents=[json_flag], help="every endpoint (never a secret)")
    for name, text in (("show", "one endpoint"), ("delete", "remove an endpoint and its deliveries"),
                       ("enable", "make an endpoint active again: it resumes where it stopped"),
                       ("disable", "stop delivering to an endpoint (notices wait for it)")):
        actions.add_parser(name, parents=[json_flag], help=text).add_argument("endpoint_id")
    deliveries = actions.add_parser("deliveries", parents=[json_flag], help="an endpoint's latest deliveries")
    deliveries.add_argument("endpoint_id")
    deliveries.add_argument("--limit", type=int, default=50, metavar="N", help="how many, newest first (1-1000)")
