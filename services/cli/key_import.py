"""``keyledger keys import FILE --format ...``: keys exported from another key service, as
``POST /v1/keys/import`` imports them (the operator's import: any organization, any grant)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.projections.imported import imported_index
from keyledger.projections.key_cache import KeyCache, apply
from keyledger.services.bootstrap.runtime import Runtime
from keyledger.services.keys.importer import ImportReport, import_lines, split_lines
from keyledger.services.keys.service import KeyService

Output = Callable[[argparse.Namespace, Any, str], None]  # prints the JSON payload or the human text


async def import_file(keys: KeyService, rt: Runtime, args: argparse.Namespace, metadata: Metadata,
                      output: Output) -> ImportReport:
    """Import ``args.file`` (NDJSON; ``-`` reads stdin) as ``args.format`` exports keys, into ``args.org``
    (default: each row's own organization); exits 1 when a line was refused (the others are imported)."""
    body = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    lines = split_lines(body)
    cache: KeyCache = {}
    async for page in rt.store.read_all():  # which secrets are imported already (a dict, as the API holds it)
        for recorded in page:
            apply(cache, recorded.event)
    index = imported_index(cache.values())

    def imported(lookup: str) -> KeyState | None:
        key_id = index.get(lookup)
        return cache.get(key_id) if key_id is not None else None

    report = await import_lines(keys, lines, args.format, prefix=keys.prefix, organization_id=args.org,
                                grantor=None, metadata=metadata, imported_key=imported)
    human = [f"imported {report.imported}, unchanged {report.unchanged}, refused {report.failed}"]
    human += [f"  {r.error}" for r in report.results if r.status == "error"]
    output(args, report, "\n".join(human))
    if report.failed:
        raise SystemExit(1)
    return report

