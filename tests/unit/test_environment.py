"""The suite runs in an environment of its own (``tests.support.env``): none of the caller's keyledger
settings, data in the session's private folder. ``tests/e2e/test_hermetic.py`` runs these checks in a
shell full of such settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keyledger.services.config import Settings, load_settings
from tests.support.env import DATA_DIR, clean_env, configures_keyledger


def test_no_setting_of_the_caller_reaches_the_tests() -> None:
    assert [name for name in os.environ if configures_keyledger(name)] == [DATA_DIR]
    # every default, whatever the caller's shell holds, but the data folder: the session's own
    assert load_settings() == Settings(data_dir=os.environ[DATA_DIR])


def test_data_goes_to_the_sessions_own_folder_never_the_users() -> None:
    data = load_settings().data_path()
    assert data == Path(os.environ[DATA_DIR])
    assert data != Path.cwd() / ".keyledger" and data.parent.name.startswith("keyledger-tests-")


def test_subprocesses_get_a_clean_environment_plus_what_the_test_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYLEDGER_VERIFY_TOKEN", "set by a test by mistake")
    monkeypatch.setenv("NATS_URL", "nats://elsewhere:4222")
    env = clean_env({"PORT": "8081"})
    assert "KEYLEDGER_VERIFY_TOKEN" not in env and "NATS_URL" not in env
    assert (env["PORT"], env[DATA_DIR]) == ("8081", os.environ[DATA_DIR])
    assert env["PATH"] == os.environ["PATH"]  # everything else passes through
