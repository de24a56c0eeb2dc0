"""The leak settings: policy, GitHub's keys, the public endpoint's rate."""

import pytest

from keyledger.services.config import SettingsError, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert (settings.leak_policy, settings.leak_github_keys_file, settings.leak_reports_per_minute) == (
        "revoke", None, 10)
    assert settings.leak_github_keys_url == "https://api.github.com/meta/public_keys/secret_scanning"


def test_values_are_read() -> None:
    settings = load_settings({"KEYLEDGER_LEAK_POLICY": " Notify ", "KEYLEDGER_LEAK_GITHUB_KEYS_FILE": "/etc/k.json",
                              "KEYLEDGER_LEAK_GITHUB_KEYS_URL": "https://keys.example/k",
                              "KEYLEDGER_LEAK_REPORTS_PER_MINUTE": "3"})
    assert (settings.leak_policy, settings.leak_github_keys_file, settings.leak_github_keys_url,
            settings.leak_reports_per_minute) == ("notify", "/etc/k.json", "https://keys.example/k", 3)


@pytest.mark.parametrize("env, message", [
    ({"KEYLEDGER_LEAK_POLICY": "ignore"}, "KEYLEDGER_LEAK_POLICY must be revoke or notify"),
    ({"KEYLEDGER_LEAK_REPORTS_PER_MINUTE": "0"}, "KEYLEDGER_LEAK_REPORTS_PER_MINUTE must be between 1"),
    ({"KEYLEDGER_FINDINGS_AUTO_REVOKE": "leaked_key"}, "'leaked_key' is no kind of finding.*KEYLEDGER_LEAK_POLICY"),
])
def test_bad_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)
