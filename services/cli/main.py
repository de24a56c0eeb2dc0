"""The ``keyledger`` command: manage keys and the embedded dev stack."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import msgspec

from keyledger.domain.errors import DomainError
from keyledger.domain.importing import SOURCES
from keyledger.services.bootstrap.roles import ROLES as WORKER_ROLES
from keyledger.services.cache.replay import ReplayFailed
from keyledger.services.cli import audit as cli_audit
from keyledger.services.cli import credentials as cli_credentials
from keyledger.services.cli import keys as cli_keys
from keyledger.services.cli import leaks as cli_leaks
from keyledger.services.cli import report as cli_report
from keyledger.services.cli import watch as cli_watch
from keyledger.services.cli import webhooks as cli_webhooks
from keyledger.services.cli import workers as cli_workers
from keyledger.services.cli.args import access_entry, duration_seconds, moment, past_moment
from keyledger.services.config import Settings, SettingsError, load_settings, masked
from keyledger.services.devstack.stack import StackError, stack_down, stack_status, stack_up
from keyledger.services.observe.logs import configure as configure_logging
from keyledger.services.storage.database import StorageError

SUPERVISED_ROLES = tuple(WORKER_ROLES)  # relay, projector, audit-sink, webhooks, watch: the commands
_LONG_RUNNING = {"serve": "serve", "run": "supervisor", "relay": "relay", "projector": "projector",
                 "audit-sink": "audit-sink", "webhooks": "webhooks",
                 "watch": "watch"}  # command -> the process kind its log lines name


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit 2, without the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full ``keyledger`` argument parser."""
    parser = _Parser(prog="keyledger", description="Event-sourced API keys.")
    json_flag = _Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="machine-readable JSON output")
    groups = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)

    keys = groups.add_parser("keys", help="create, list, show, edit, rotate and revoke keys").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    create = keys.add_parser("create", parents=[json_flag], help="create a key; prints its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--org", help="organization id")
    create.add_argument("--scope", action="append", metavar="SCOPE", help="global scope (repeatable)")
    create.add_argument("--access", action="append", type=access_entry, metavar="RES[:ID]=SCOPE[,SCOPE]",
                        help="resource access entry, e.g. website:abc=read:data (repeatable)")
    create.add_argument("--expires", type=moment, metavar="TIME|DURATION", help="ISO time or e.g. 30d")
    create.add_argument("--rate-limit", type=int, metavar="N", help="requests per minute (default: by rate:* tier)")
    create.add_argument("--description", default="", help="what the key is for")
    create.add_argument("--tag", action="append", metavar="TAG", help="a label, e.g. team:web (repeatable)")
    edit = keys.add_parser("edit", parents=[json_flag], help="rename, describe or tag a key")
    edit.add_argument("key_id")
    edit.add_argument("--name")
    edit.add_argument("--description")
    edit.add_argument("--tag", action="append", metavar="TAG", help="the key's tags become these (repeatable)")
    edit.add_argument("--no-tags", action="store_true", help="remove every tag")
    listing = keys.add_parser("list", parents=[json_flag], help="list keys (prefix/start only)")
    listing.add_argument("--all", action="store_true", help="include revoked and expired keys")
    show = keys.add_parser("show", parents=[json_flag], help="a key's state and event history")
    show.add_argument("key_id")
    show.add_argument("--as-of", type=past_moment, metavar="TIME",
                      help="the key as it was at TIME (ISO time, or 2h = 2h ago)")
    rotate = keys.add_parser("rotate", parents=[json_flag], help="new secret; optional grace for the old one")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", type=duration_seconds, default=0, metavar="DURATION", help="e.g. 1h (max 7d)")
    revoke = keys.add_parser("revoke", parents=[json_flag], help="revoke a key (irreversible)")
    revoke.add_argument("key_id")
    revoke.add_argument("--reason", default="")
    imports = keys.add_parser("import", parents=[json_flag],
                              help="import keys exported from databuddy, better-auth, unkey or keyledger (NDJSON)")
    imports.add_argument("file", metavar="FILE", help="one exported key a line (- reads stdin)")
    imports.add_argument("--format", required=True, choices=SOURCES, help="the source's export format")
    imports.add_argument("--org", help="the organization the keys go to (default: each row's own)")

    for name, text in (("run", "relay, projector, audit sink, watch and webhooks, each in a process of its own, "
                               "restarted when it exits (embedded stack if no URLs)"),
                       ("relay", "publish stored events to NATS JetStream"),
                       ("projector", "build the key cache table from JetStream"),
                       ("audit-sink", "store usage events from JetStream in Postgres")):
        role_parser = groups.add_parser(name, help=text)
        if name == "run":
            _roles_argument(role_parser)
    audit = groups.add_parser("audit", help="export, verify and retain the audit trail").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    export = audit.add_parser("export", help="stream the audit trail with a hash chain and a manifest")
    export.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    export.add_argument("--from", dest="from_", type=past_moment, metavar="TIME", help="ISO time or e.g. 7d (ago)")
    export.add_argument("--to", type=past_moment, metavar="TIME", help="ISO time or e.g. 1h (ago); exclusive")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    check = audit.add_parser("verify", parents=[json_flag],
                             help="check an export's signature, form, chain and manifest (exit 0 only if all hold)")
    check.add_argument("file")
    key = check.add_mutually_exclusive_group()
    key.add_argument("--public-key", metavar="FILE|BASE64",
                     help="the server's public key: base64, PEM, or GET /v1/audit/public-key's JSON (or a file of it)")
    key.add_argument("--server", metavar="URL", help="fetch the public key from URL/v1/audit/public-key")
    check.add_argument("--since-manifest", metavar="OLD",
                       help="an earlier export (or just its manifest line): FILE must extend it unchanged")
    anchors = audit.add_parser("anchors", help="the signed manifests of the latest exports, as recorded in Postgres")
    anchors.add_argument("--limit", type=int, default=1, metavar="N", help="how many, newest first (default 1)")
    retention = audit.add_parser("retention", help="drop usage partitions older than the retention period")
    retention.add_argument("--days", type=int, metavar="N",
                           help="keep N days (default KEYLEDGER_AUDIT_RETENTION_DAYS, 400)")
    replay = groups.add_parser("replay", parents=[json_flag], help="rebuild the key cache from the event store")
    replay.add_argument("--workers", type=int, default=None, metavar="N",
                        help="fold the keys in N processes, each its share of them (default: one per core)")
    serve = groups.add_parser("serve", help="the HTTP API on 127.0.0.1:$PORT (8080), with relay, projector, audit "
                              "sink, watch and webhooks as supervised processes")
    serve.add_argument("--no-workers", action="store_true", help="only the API (another process runs 'keyledger run')")
    serve.add_argument("--workers", type=int, default=None, metavar="N", dest="processes",
                       help="API worker processes, each with its own key cache (default: one per core)")
    _roles_argument(serve)

    cli_credentials.add_parser(groups, json_flag, _Parser)
    cli_report.add_parser(groups, json_flag, _Parser)
    cli_webhooks.add_parser(groups, json_flag, _Parser)
    cli_watch.add_parser(groups, json_flag, _Parser)
    cli_leaks.add_parser(groups, json_flag, _Parser)

    stack = groups.add_parser("stack", help="the embedded Postgres + NATS dev stack")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--json", action="store_true")
    stack.add_argument("--nats-cluster", type=int, metavar="N", dest="nats_cluster",
                       help="up: run N NATS servers as one JetStream cluster (streams then keep 3 copies)")
    return parser


def _roles_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--roles", type=_roles, default=SUPERVISED_ROLES, metavar="ROLE,...",
                        help=f"the worker roles to supervise (default all: {','.join(SUPERVISED_ROLES)}); run the "
                             "others elsewhere, each with 'keyledger ROLE'")


def _roles(text: str) -> tuple[str, ...]:
    """``--roles relay,projector``: known roles, each once, in the order given."""
    roles = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in SUPERVISED_ROLES]
    if unknown or not roles:
        raise argparse.ArgumentTypeError(f"unknown role {', '.join(unknown)!s}; known: {', '.join(SUPERVISED_ROLES)}"
                                         if unknown else "name at least one role (or use serve --no-workers)")
    return roles


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    data_dir = settings.data_path()
    if args.action == "down":
        stopped = stack_down(data_dir)
        print("stack stopped" if stopped else "stack was not running")
        return 0
    if args.nats_cluster is not None and not 1 <= args.nats_cluster <= 5:
        return _fail("--nats-cluster must be between 1 and 5", 2)
    info = stack_up(data_dir, nats_cluster=args.nats_cluster) if args.action == "up" else stack_status(data_dir)
    if info is None:
        print("stack is not running")
        return 1
    credentials = info.data_dir / "credentials.json"
    payload = {"database_url": masked(info.database_url), "admin_database_url": masked(info.admin_database_url),
               "nats_url": masked(info.nats_url), "credentials": str(credentials), "data_dir": str(info.data_dir)}
    if args.json:
        print(msgspec.json.encode(payload).decode())
    else:
        print(f"postgres: {payload['database_url']} (owner: {payload['admin_database_url']})\n"
              f"nats:     {payload['nats_url']}\ndata:     {info.data_dir}\n"
              f"passwords: {credentials} (mode 0600)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``keyledger`` console script; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    logged = False  # once a long-running command set up its log lines, an error ending it is one of them
    try:
        settings = load_settings()
        if args.group == "stack":
            return _stack(args, settings)
        if args.group == "leaks":
            return cli_leaks.run(args, settings)
        if cli_watch.rebuilding(args):  # one-shot, unlike `keyledger watch` (the role)
            return asyncio.run(cli_watch.run_rebuild(args, settings))
        managing = args.group == "webhooks" and args.action is not None  # `keyledger webhooks` alone: a worker
        # structured lines (KEYLEDGER_LOG_FORMAT); one-shot commands keep plain ones
        if args.group in _LONG_RUNNING and not managing:
            configure_logging(_LONG_RUNNING[args.group], settings.log_format, token_prefix=settings.token_prefix)
            logged = True
        if args.group == "keys":
            asyncio.run(cli_keys.run(args, settings))
        elif args.group == "serve":
            from keyledger.services.cli.serve import serve

            if args.processes is not None and not 1 <= args.processes <= 256:
                return _fail("--workers must be between 1 and 256", 2)
            serve(settings, workers=not args.no_workers, processes=args.processes or os.cpu_count() or 1,
                  roles=args.roles)
        elif args.group == "audit":
            if args.action == "retention" and args.days is not None and args.days < 1:
                return _fail("--days must be at least 1")
            if args.action == "anchors" and not 1 <= args.limit <= 10_000:
                return _fail("--limit must be between 1 and 10000", 2)
            return asyncio.run(cli_audit.run(args, settings))
        elif args.group == "verify-credentials":
            return asyncio.run(cli_credentials.run(args, settings))
        elif managing:
            if args.action == "deliveries" and not 1 <= args.limit <= 1000:
                return _fail("--limit must be between 1 and 1000", 2)
            return asyncio.run(cli_webhooks.run(args, settings))
        elif args.group == "report":
            return asyncio.run(cli_report.run(args, settings))
        elif args.group == "replay":
            if args.workers is not None and not 1 <= args.workers <= 256:
                return _fail("--workers must be between 1 and 256", 2)
            asyncio.run(cli_workers.run_replay(args, settings))
        elif args.group == "run":
            from keyledger.services.cli.serve import prepare
            from keyledger.services.cli.supervise import run_supervised

            os.environ.update(asyncio.run(prepare(settings, bootstrap_keys=False)).environment())
            return run_supervised(args.roles)
        else:
            asyncio.run(cli_workers.run_worker(args.group, settings))
        return 0
    except DomainError as exc:
        return _fail(str(exc), logged=logged)
    except (SettingsError, StackError) as exc:
        return _fail(str(exc), logged=logged)
    except StorageError as exc:
        return _fail(f"database unavailable: {exc}", logged=logged)
    except ReplayFailed as exc:
        return _fail(f"replay failed, nothing swapped in: {exc}", logged=logged)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, logged=logged)


def _fail(message: str, code: int = 1, logged: bool = False) -> int:
    """Say why the command ends (``logged``: as an error log line, in the process's log format) and return
    ``code``."""
    if logged:
        logging.getLogger("keyledger.cli").error(message)
    else:
        sys.stderr.write(f"keyledger: error: {message}\n")
    return code

