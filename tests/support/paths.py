"""Where things are on disk, independent of the test module asking."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository's top folder (it holds pyproject.toml)."""
