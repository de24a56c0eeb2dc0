"""``keyledger watch``: the watch role (suspicious-activity findings from the usage stream), and
``keyledger watch rebuild``, which rebuilds the findings from the usage table."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from keyledger.services.bootstrap.runtime import open_runtime
from keyledger.services.config import Settings
from keyledger.services.storage.watch_store import WatchStore
from keyledger.services.watch.rebuild import rebuild


def add_parser(groups: Any, json_flag: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    """``keyledger watch [rebuild]``."""
    watch = groups.add_parser("watch", parents=[json_flag], help="findings of suspicious activity from the usage "
                              "stream; 'watch rebuild' rebuilds them from the usage table")
    watch.add_argument("action", nargs="?", choices=["rebuild"],
                       help="rebuild: replay the usage table through the rules into fresh findings (keeps "
                            "acknowledgements; notifies and revokes nothing)")


def rebuilding(args: argparse.Namespace) -> bool:
    """Whether the command is ``keyledger watch rebuild`` (a one-shot command, not the role)."""
    return bool(args.group == "watch" and args.action == "rebuild")


async def run_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild the findings and print what was done."""
    async with open_runtime(settings, admin=True) as rt:  # the rebuild replaces the findings and profiles
        done = await rebuild(WatchStore(rt.db), settings.findings)
    if args.json:
        print(msgspec.json.encode(done).decode())
    else:
        print(f"rebuilt {done.findings} finding{'s' if done.findings != 1 else ''} from {done.events} usage events "
              f"of {done.keys} keys in {done.seconds:.2f}s")
    return 0
