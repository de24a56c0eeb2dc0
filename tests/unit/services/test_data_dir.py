"""The data folder is a setting (``KEYLEDGER_DATA_DIR``, read once, with the other settings): the embedded
stack, the usage spool and serve's metrics files all live under ``Settings.data_dir``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from keyledger.services.bootstrap.verify_side import spool_dir
from keyledger.services.config import Settings, load_settings
from tests.support.paths import REPO_ROOT


def test_the_data_folder_is_keyledger_under_the_working_directory_unless_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).data_path() == tmp_path / ".keyledger"
    assert load_settings({"KEYLEDGER_DATA_DIR": ""}).data_path() == tmp_path / ".keyledger"
    elsewhere = load_settings({"KEYLEDGER_DATA_DIR": str(tmp_path / "elsewhere")})
    assert elsewhere.data_path("metrics", "1") == tmp_path / "elsewhere" / "metrics" / "1"
    assert load_settings({"KEYLEDGER_DATA_DIR": "~/kl"}).data_path() == Path.home() / "kl"


def test_usage_events_spool_under_the_data_folder_unless_told_otherwise(tmp_path: Path) -> None:
    assert spool_dir(Settings(data_dir=str(tmp_path))) == tmp_path / "spool"
    assert spool_dir(Settings(data_dir=str(tmp_path), spool_dir=str(tmp_path / "s"))) == tmp_path / "s"


def test_the_data_folder_variable_is_read_once_with_the_other_settings() -> None:
    readers = {path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "services").rglob("*.py")
               if any(isinstance(node, ast.Constant) and node.value == "KEYLEDGER_DATA_DIR"
                      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))}
    assert readers == {"services/config.py"}
