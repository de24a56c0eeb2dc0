"""``keyledger audit export | verify | retention``."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import BinaryIO

import msgspec

from keyledger.services.config import Settings
from keyledger.services.runtime import open_runtime


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch one ``audit`` sub-command; returns the exit code."""
    if args.action == "verify":
        return _verify(args)
    if args.action == "export":
        await _export(args, settings)
        return 0
    await _retention(args, settings)
    return 0


async def _export(args: argparse.Namespace, settings: Settings) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from keyledger.services.audit.export import count_records, export_lines
    from keyledger.services.storage.audit_export_source import ExportSource

    async with open_runtime(settings, pool_size=2) as rt:
        source = ExportSource(rt.db)
        total = await count_records(source, args.from_, args.to)
        out: BinaryIO = sys.stdout.buffer if args.output in (None, "-") else Path(args.output).open("wb")
        columns = (TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        try:
            with Progress(*columns, disable=not sys.stderr.isatty()) as bar:
                task = bar.add_task("export", total=total)
                async for chunk in export_lines(source, args.format, args.from_, args.to,
                                                progress=lambda n: bar.update(task, completed=n)):
                    out.write(chunk)
        finally:
            if out is not sys.stdout.buffer:
                out.close()
    if args.output not in (None, "-"):
        sys.stderr.write(f"exported {total} records to {args.output}\n")


def _verify(args: argparse.Namespace) -> int:
    from keyledger.services.audit.export_verify import verify_export

    report = verify_export(Path(args.file))
    if args.json:
        print(msgspec.json.encode(report).decode())
    elif report.ok:
        print(f"OK: {report.count} records, hash chain and manifest intact")
    else:
        print(f"TAMPERED: {len(report.problems)} problem(s) in {args.file}")
        for problem in report.problems:
            print(f"  - {problem}")
    return 0 if report.ok else 1


async def _retention(args: argparse.Namespace, settings: Settings) -> None:
    from keyledger.services.storage.usage_partitions import UsagePartitions

    keep = args.days or settings.audit_retention_days
    async with open_runtime(settings, pool_size=1) as rt:
        dropped = await UsagePartitions(rt.db).apply_retention(keep, rt.clock(), actor=f"cli:{_user()}")
    print(f"kept {keep} days; dropped {len(dropped)} partition(s){': ' + ', '.join(dropped) if dropped else ''}")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
