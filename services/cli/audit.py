"""``keyledger audit export | verify | retention``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import msgspec

from keyledger.services.bootstrap.runtime import open_runtime
from keyledger.services.cli.keys import local_user
from keyledger.services.config import Settings

if TYPE_CHECKING:
    from keyledger.services.audit.signing import PublicKey


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch one ``audit`` sub-command; returns the exit code."""
    if args.action == "verify":
        return _verify(args)
    if args.action == "export":
        await _export(args, settings)
        return 0
    if args.action == "anchors":
        await _anchors(args, settings)
        return 0
    await _retention(args, settings)
    return 0


async def _export(args: argparse.Namespace, settings: Settings) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from keyledger.services.audit.export import count_records, export_lines
    from keyledger.services.audit.notary import notary_for
    from keyledger.services.storage.audit_export_source import ExportSource

    async with open_runtime(settings, pool_size=2) as rt:
        source, notary = ExportSource(rt.db), notary_for(rt.db, settings)
        key = await notary.signing_key()
        total = await count_records(source, args.from_, args.to)
        out: BinaryIO = sys.stdout.buffer if args.output in (None, "-") else Path(args.output).open("wb")
        columns = (TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        try:
            with Progress(*columns, disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task("export", total=total)
                async for chunk in export_lines(source, args.format, args.from_, args.to,
                                                progress=lambda n: bar.update(task, completed=n), key=key,
                                                anchor=notary.record, generated_at=rt.clock()):
                    out.write(chunk)
        finally:
            if out is not sys.stdout.buffer:
                out.close()
    if args.output not in (None, "-"):
        sys.stderr.write(f"exported {total} records to {args.output}, signed by {key.key_id}\n")


async def _anchors(args: argparse.Namespace, settings: Settings) -> None:
    """The manifests of the latest exports as recorded in Postgres, newest first, one NDJSON manifest line
    each (a line saved to a file is an OLD for ``audit verify --since-manifest``)."""
    from keyledger.services.audit.export import manifest_from_anchor, manifest_line
    from keyledger.services.storage.audit_export_anchors import ExportAnchors

    async with open_runtime(settings, pool_size=1) as rt:
        anchors = await ExportAnchors(rt.db).recent(args.limit)
    for anchor in anchors:
        sys.stdout.buffer.write(manifest_line(manifest_from_anchor(anchor), "ndjson"))


# Exit codes of ``keyledger audit verify``.
VERIFIED = 0  # every check passed, the signature included
REFUSED = 1  # a check failed: altered, re-chained, not canonical, badly signed, or not extending --since-manifest
USAGE = 2  # bad arguments, an unreadable file or --public-key
UNCHECKED = 3  # nothing wrong found, but no public key was given: the signature was NOT checked
NO_KEY = 4  # the public key could not be fetched from --server


class _KeyUnavailable(Exception):
    """The public key could not be fetched (the server is unreachable, or answered something else)."""


def _public_key_arg(value: str) -> PublicKey:
    """``--public-key``: a file holding the key, or the key itself (base64, PEM or the endpoint's JSON)."""
    from keyledger.services.audit.signing import PublicKey

    path = Path(value)
    text = path.read_text(encoding="utf-8") if len(value) < 4096 and path.is_file() else value
    return PublicKey.parse(text)


def _fetch_key(server: str, key_id: str | None) -> PublicKey | None:
    """The public key ``server`` serves for ``key_id`` (its current key when None); None when it has no such key."""
    from keyledger.services.audit.signing import PublicKey

    if not server.startswith(("http://", "https://")):
        raise _KeyUnavailable(f"--server must be an http:// or https:// URL, got {server!r}")
    url = server.rstrip("/") + "/v1/audit/public-key" + (f"?{urlencode({'key_id': key_id})}" if key_id else "")
    try:
        with urlopen(Request(url, headers={"accept": "application/json"}), timeout=10) as response:
            body = response.read(65536).decode("utf-8", "replace")
    except HTTPError as exc:
        if exc.code == 404 and key_id is not None:
            return None
        raise _KeyUnavailable(f"{url} answered {exc.code}") from None
    except (URLError, OSError) as exc:
        raise _KeyUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from None
    try:
        key = PublicKey.parse(body)
    except ValueError as exc:
        raise _KeyUnavailable(f"{url} did not answer a public key: {exc}") from None
    if key_id is not None and key.key_id != key_id:
        raise _KeyUnavailable(f"{url} answered key {key.key_id} when asked for {key_id}")
    return key


def _verify(args: argparse.Namespace) -> int:
    from keyledger.services.audit.export_verify import (
        check_signature,
        read_manifest,
        verify_export,
        with_problems,
        with_signature,
    )

    try:
        given = _public_key_arg(args.public_key) if args.public_key else None
    except (ValueError, OSError) as exc:
        return _usage(f"--public-key: {exc}")
    old: dict[str, Any] | None = None
    since: list[str] = []
    try:
        if args.since_manifest:
            old, since = read_manifest(Path(args.since_manifest))
        report = verify_export(Path(args.file), since=old)
    except OSError as exc:
        return _usage(f"cannot read {exc.filename}: {exc.strerror}")
    keys: dict[str | None, PublicKey | None] = {}

    def key_for(key_id: str | None) -> PublicKey | None:
        if given is not None or not args.server:
            return given
        if key_id not in keys:
            keys[key_id] = _fetch_key(args.server, key_id)
        return keys[key_id]

    try:
        key = key_for(report.key_id)
        if key is not None:
            report = with_signature(report, key)
        elif args.server:
            report = with_problems(report, [f"the manifest names key {report.key_id!r}, which {args.server} does not "
                                            "know"])
        if old is not None and (args.server or given is not None):
            old_id = old.get("key_id")
            old_key = key_for(old_id if isinstance(old_id, str) else None)
            problem = (check_signature(old, old_key)[1] if old_key is not None
                       else f"it names key {old_id!r}, which {args.server} does not know")
            since += [problem] if problem else []
    except _KeyUnavailable as exc:
        sys.stderr.write(f"keyledger: error: could not get the public key: {exc}\n")
        return NO_KEY
    report = with_problems(report, [f"since: the earlier export {args.since_manifest}: {p}" for p in since])
    code = REFUSED if not report.ok else VERIFIED if report.verified else UNCHECKED
    if args.json:
        print(msgspec.json.encode({**dataclasses.asdict(report), "verified": report.verified,
                                   "exit_code": code}).decode())
    elif code == REFUSED:
        print(f"TAMPERED: {len(report.problems)} problem(s) in {args.file}")
        for problem in report.problems:
            print(f"  - {problem}")
    else:
        extends = f"; extends {args.since_manifest} (its records unchanged)" if old is not None else ""
        if code == VERIFIED:
            print(f"OK: {report.count} records; signature by {report.key_id} verified; hash chain and manifest "
                  f"intact{extends}")
        else:
            print(f"UNVERIFIED: {report.count} records; hash chain and manifest consistent{extends}, but the "
                  "signature was NOT checked (give --public-key or --server): anyone can make a file like this")
    return code


def _usage(message: str) -> int:
    sys.stderr.write(f"keyledger: error: {message}\n")
    return USAGE


async def _retention(args: argparse.Namespace, settings: Settings) -> None:
    from keyledger.services.storage.usage_partitions import UsagePartitions

    keep = args.days or settings.audit_retention_days
    async with open_runtime(settings, pool_size=1, admin=True) as rt:  # only the owner drops partitions
        dropped = await UsagePartitions(rt.db).apply_retention(keep, rt.clock(), actor=f"cli:{local_user()}")
    print(f"kept {keep} days; dropped {len(dropped)} partition(s){': ' + ', '.join(dropped) if dropped else ''}")
