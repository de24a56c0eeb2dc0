"""Optional py-spy profiles of a server process while a benchmark loads it.

Set ``KEYLEDGER_BENCH_PROFILE=<folder>`` and each load phase that supports it writes
``<folder>/<name>.svg``: a flame graph of the granian worker, sampled at 200 Hz without
pausing it, idle time excluded. ``KEYLEDGER_BENCH_PROFILE_FORMAT=raw`` writes collapsed
stacks (``<name>.txt``) instead, ``speedscope`` a speedscope JSON. Unset, this does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def profiled(pid: int, name: str, seconds: float) -> AsyncIterator[None]:
    """Record ``pid`` for ``seconds`` while the block runs, if profiling is switched on."""
    folder, binary = os.environ.get("KEYLEDGER_BENCH_PROFILE"), _py_spy()
    if not folder or binary is None:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    fmt = os.environ.get("KEYLEDGER_BENCH_PROFILE_FORMAT", "flamegraph")
    suffix = {"raw": "txt", "speedscope": "json"}.get(fmt, "svg")
    proc = await asyncio.create_subprocess_exec(
        binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200",
        "--format", fmt, "--output", str(Path(folder) / f"{name}.{suffix}"), "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        yield
    finally:
        await proc.wait()
