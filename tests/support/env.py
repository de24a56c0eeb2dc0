"""The environment the tests run in: none of the caller's keyledger settings, data in a private folder.

A developer's shell may hold ``KEYLEDGER_VERIFY_TOKEN``, ``DATABASE_URL``, ``PORT``... for their own
server. The suite must not see them: ``isolate`` removes them from this process before any settings
are read, and every subprocess a test starts gets ``clean_env()``, built from that clean environment.
The suite's own knobs have names of their own (``TEST_DATABASE_URL`` and ``TEST_NATS_URL``: servers
to use instead of starting a private embedded stack), so they cannot be confused with the service's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SCRUBBED_PREFIX = "KEYLEDGER_"
SCRUBBED_NAMES = frozenset({"DATABASE_URL", "NATS_URL", "PORT", "HOST"})
DATA_DIR = "KEYLEDGER_DATA_DIR"


def configures_keyledger(name: str) -> bool:
    """Whether the variable ``name`` is read by keyledger as a setting."""
    return name.startswith(SCRUBBED_PREFIX) or name in SCRUBBED_NAMES


def scrubbed(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without any variable that configures keyledger."""
    return {name: value for name, value in environ.items() if not configures_keyledger(name)}


def isolate(data_dir: Path) -> dict[str, str]:
    """Remove keyledger's settings from this process's environment and point its data folder at
    ``data_dir`` (never the user's ``./.keyledger``). Returns what was removed."""
    removed = {name: os.environ.pop(name) for name in list(os.environ) if configures_keyledger(name)}
    os.environ[DATA_DIR] = str(data_dir)
    return removed


def clean_env(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess: this process's without keyledger's settings, with the
    session's data folder, plus ``settings`` (e.g. ``{"DATABASE_URL": ...}``)."""
    env = scrubbed(os.environ)
    if DATA_DIR in os.environ:
        env[DATA_DIR] = os.environ[DATA_DIR]
    return {**env, **(settings or {})}
