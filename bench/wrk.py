"""The same warm-verify load measured by ``wrk`` (Debian package ``wrk``), a load generator written in C.

``bench.loadgen`` is Python: at 32 connections it takes a third of a core and its own event loop's delays
are part of every latency it measures. ``wrk`` (one thread, the same 32 keep-alive connections, the same
request bodies round-robin) costs the two cores less and times requests more closely, so its rows show
how much of the p99 belongs to the server. ``make bench`` installs it where it can (as root, with
apt-get); without it these rows are left out and the run says so.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {BODIES}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""


@dataclass(frozen=True)
class WrkResult:
    """Requests per second, latency percentiles (ms) and responses that were not 2xx."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    not_ok: int


def available() -> str | None:
    """The ``wrk`` binary, if installed."""
    return shutil.which("wrk")


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse(output: str) -> WrkResult:
    """The figures of ``wrk --latency`` output."""
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", output, re.MULTILINE))
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rps is None or set(percentiles) != {"50", "90", "99"}:
        raise ValueError(f"unexpected wrk output: {output[-1000:]}")
    not_ok = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(rps=float(rps.group(1)), p50_ms=_ms(percentiles["50"]), p90_ms=_ms(percentiles["90"]),
                     p99_ms=_ms(percentiles["99"]),
                     not_ok=(int(not_ok.group(1)) if not_ok else 0) + (sum(map(int, errors.groups())) if errors else 0))


async def run_wrk(binary: str, port: int, path: str, bodies: list[bytes], connections: int, seconds: float,
                  warmup: float = 1.0) -> WrkResult:
    """``wrk`` POSTing ``bodies`` round-robin to 127.0.0.1:``port``: a warm-up run, then the measured one."""
    with tempfile.TemporaryDirectory(prefix="kl-wrk-") as folder:
        script = Path(folder) / "post.lua"
        script.write_text(_SCRIPT.replace("{BODIES}", "{" + ", ".join(json.dumps(b.decode()) for b in bodies) + "}"))
        for duration in (warmup, seconds):
            proc = await asyncio.create_subprocess_exec(
                binary, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "-s", str(script),
                f"http://127.0.0.1:{port}{path}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"wrk failed (exit {proc.returncode}): {err.decode(errors='replace')[-1000:]}")
    return parse(out.decode())
