"""``keyledger verify-credentials create | list | revoke``: the services allowed to call verify."""

from __future__ import annotations

import argparse

import msgspec

from keyledger.services.bootstrap.runtime import open_runtime
from keyledger.services.cli.keys import local_user
from keyledger.services.config import Settings
from keyledger.services.keys.credentials import issue
from keyledger.services.storage.verify_credentials import VerifyCredentials


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch one ``verify-credentials`` sub-command; returns the exit code."""
    async with open_runtime(settings, pool_size=1) as rt:
        credentials = VerifyCredentials(rt.db)
        if args.action == "create":
            credential_id, secret = await issue(credentials, args.name, created_by=f"cli:{local_user()}")
            if args.json:
                print(msgspec.json.encode({"id": credential_id, "name": args.name, "secret": secret}).decode())
            else:
                print(f"verify credential {credential_id} ({args.name}); shown only this once, store it now:\n"
                      f"  {secret}\n  services send it as 'Authorization: Bearer <it>' on POST /v1/verify")
            return 0
        if args.action == "list":
            listed = await credentials.listed()
            if args.json:
                print(msgspec.json.encode({"items": listed}).decode())
            for item in [] if args.json else listed:
                state = f"revoked {item.revoked_at.isoformat()}" if item.revoked_at else "active"
                print(f"{item.id}  {state:<8}  {item.created_at.isoformat()}  {item.name}")
            if not listed and not args.json:
                print("no verify credentials")
            return 0
        if await credentials.revoke(args.credential_id):
            print(f"verify credential {args.credential_id} revoked (API processes drop it within seconds)")
            return 0
        print(f"keyledger: error: no active verify credential {args.credential_id}")
        return 1


def add_parser(groups: argparse._SubParsersAction, json_flag: argparse.ArgumentParser,  # type: ignore[type-arg]
               parser_class: type[argparse.ArgumentParser]) -> None:
    """The ``verify-credentials`` command group."""
    group = groups.add_parser("verify-credentials", help="credentials of the services that call verify")
    actions = group.add_subparsers(dest="action", required=True, parser_class=parser_class)
    create = actions.add_parser("create", parents=[json_flag], help="a new credential; prints its secret once")
    create.add_argument("--name", required=True, help="which service it is for")
    actions.add_parser("list", parents=[json_flag], help="every credential (never a secret)")
    revoke = actions.add_parser("revoke", help="revoke a credential for good")
    revoke.add_argument("credential_id")
