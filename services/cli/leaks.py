"""``keyledger leaks scan PATH... [--git] [--json] [--report URL]``: find keyledger tokens and verify
credentials in files (and git history), print where, never the secret; exit 1 when any is found.

``--report URL`` sends what it found to that keyledger's ``POST /v1/leaks`` (one request per file, at most
100 tokens each), where a live key is revoked (or reported, under ``KEYLEDGER_LEAK_POLICY=notify``).
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time

import httpx
import msgspec

from keyledger.domain.leaks import prefixes_for
from keyledger.services.config import Settings
from keyledger.services.leaks.scan import Finding, scan

_PER_REQUEST = 100  # tokens in one report (the endpoint's limit)


def add_parser(groups: argparse._SubParsersAction, json_flag: argparse.ArgumentParser,  # type: ignore[type-arg]
               parser_class: type[argparse.ArgumentParser]) -> None:
    """The ``leaks`` command group."""
    group = groups.add_parser("leaks", help="find leaked keyledger keys in files and git history")
    actions = group.add_subparsers(dest="action", required=True, parser_class=parser_class)
    found = actions.add_parser("scan", parents=[json_flag], help="print where tokens are (never a secret); exit 1 "
                               "when any is found")
    found.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (.git and binary files skipped)")
    found.add_argument("--git", action="store_true", help="also every commit of the git repositories of PATHs")
    found.add_argument("--report", metavar="URL", help="send the tokens found to the keyledger at URL "
                       "(POST /v1/leaks), which revokes the live ones")
    found.add_argument("--prefix", action="append", default=[], metavar="PREFIX",
                       help="a token prefix to look for besides KEYLEDGER_TOKEN_PREFIX, kl and klvc (repeatable)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Scan, print, report; 1 when something was found, 0 when not, 2 for a bad prefix."""
    try:
        prefixes = prefixes_for(settings.token_prefix, args.prefix)
    except ValueError as exc:
        sys.stderr.write(f"keyledger: error: {exc}\n")
        return 2
    skipped: list[str] = []
    findings = scan(args.paths, prefixes, history=args.git, skipped=skipped)
    for reason in skipped:
        sys.stderr.write(f"keyledger: skipped {reason}\n")
    if args.json:
        sys.stdout.write(msgspec.json.encode({"findings": [f.public() for f in findings]}).decode() + "\n")
    else:
        for finding in findings:
            sys.stdout.write(finding.describe() + "\n")
        if findings:
            sys.stderr.write(f"{len(findings)} keyledger token(s) found: revoke or rotate them, and take them out "
                             "of the files and the history\n")
    if findings and args.report:
        report(findings, args.report)
    return 1 if findings else 0


def report(findings: list[Finding], url: str) -> None:
    """Send each token once (grouped by the file it was first found in) to ``url``'s ``POST /v1/leaks``."""
    endpoint = url.rstrip("/") if url.rstrip("/").endswith("/v1/leaks") else url.rstrip("/") + "/v1/leaks"
    by_place: dict[str, list[str]] = {}
    seen: set[str] = set()
    for finding in findings:
        if finding.token not in seen:
            seen.add(finding.token)
            place = f"{finding.commit[:12]}:{finding.path}" if finding.commit else finding.path
            by_place.setdefault(place, []).append(finding.token)
    reporter = f"keyledger leaks scan ({getpass.getuser()}@{socket.gethostname()})"
    sent = 0
    with httpx.Client(timeout=30) as client:
        for place, tokens in by_place.items():
            for i in range(0, len(tokens), _PER_REQUEST):
                chunk = tokens[i:i + _PER_REQUEST]
                if _post(client, endpoint, {"tokens": chunk, "url": place, "reporter": reporter, "source": "scanner"}):
                    sent += len(chunk)
    sys.stderr.write(f"reported {sent} of {len(seen)} token(s) to {endpoint}\n")


def _post(client: httpx.Client, endpoint: str, body: dict[str, object]) -> bool:
    for _ in range(5):
        try:
            answer = client.post(endpoint, json=body)
        except httpx.HTTPError as exc:
            sys.stderr.write(f"keyledger: cannot report to {endpoint}: {exc}\n")
            return False
        if answer.status_code == 429:  # the endpoint's per-address limit: wait as it says
            time.sleep(min(60, int(answer.headers.get("Retry-After", "1") or 1)))
            continue
        if answer.status_code != 202:
            sys.stderr.write(f"keyledger: {endpoint} answered {answer.status_code}: {answer.text[:200]}\n")
            return False
        return True
    return False
