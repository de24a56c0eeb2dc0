"""``keyledger report hygiene``: the hygiene report, built from the database as the API builds it."""

from __future__ import annotations

import argparse
import sys

import msgspec

from keyledger.domain.key import KeyState
from keyledger.projections.key_cache import apply
from keyledger.services.bootstrap.runtime import open_runtime
from keyledger.services.config import Settings
from keyledger.services.keys.hygiene import HygieneReports, hygiene_rules
from keyledger.services.keys.hygiene_views import HygieneReport
from keyledger.services.storage.usage_grants import KeyUsage


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the report on every active key (``--org``: of one organization); returns the exit code."""
    async with open_runtime(settings, pool_size=3) as rt:
        cache: dict[str, KeyState] = {}
        async for page in rt.store.read_all():
            for recorded in page:
                apply(cache, recorded.event)
        states = [state for state in cache.values() if args.org is None or state.organization_id == args.org]
        reports = HygieneReports(KeyUsage(rt.db), hygiene_rules(settings))
        report = await reports.report(states, rt.clock(), args.org)
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n" if args.json else describe(report))
    return 0


def describe(report: HygieneReport) -> str:
    """The report for people: a line per key, its issues, and each suggestion's PATCH body."""
    rules = report.rules
    lines = [f"{report.summary['keys']} active key(s); unused: no use for {rules.unused_days} days, not_rotated: "
             f"a secret {rules.rotate_days} days old, expiring: within {rules.expiring_days} days"]
    for item in report.items:
        used = item.last_used_at.isoformat() if item.last_used_at else "never"
        lines.append(f"{item.id}  {item.start}...  {item.name!r}  v{item.version}  last used: {used}  "
                     f"issues: {', '.join(item.issues) or 'none'}")
        if item.suggestion is not None:
            body = msgspec.json.encode(item.suggestion.patch).decode()
            removed = "; ".join(f"{g.resource}{':' + g.id if g.id else ''}={','.join(g.scopes)}"
                                for g in item.suggestion.unused_grants)
            lines.append(f"  suggestion: PATCH /v1/keys/{item.id} with If-Match: \"{item.version}\" and {body}")
            lines.append(f"  it removes: {removed}")
    return "\n".join(lines) + "\n"


def add_parser(groups: argparse._SubParsersAction, json_flag: argparse.ArgumentParser,  # type: ignore[type-arg]
               parser_class: type[argparse.ArgumentParser]) -> None:
    """The ``report`` command group."""
    group = groups.add_parser("report", help="reports on the keys")
    reports = group.add_subparsers(dest="action", required=True, parser_class=parser_class)
    hygiene = reports.add_parser("hygiene", parents=[json_flag],
                                 help="every active key's last use, rotation, expiry, issues and least-privilege "
                                      "suggestion")
    hygiene.add_argument("--org", metavar="ORG", help="only this organization's keys")
