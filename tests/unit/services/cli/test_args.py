"""Parsing of CLI values and settings (no I/O)."""

from datetime import datetime, timedelta, timezone

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.services.cli.args import access_entry, duration_seconds, moment
from keyledger.services.config import SettingsError, load_settings
from keyledger.services.keys.views import join_access, split_access

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("website:abc=read:data", AccessEntry(resource="website", id="abc", scopes=("read:data",))),
        ("error_data=read:analytics, read:export",
         AccessEntry(resource="error_data", scopes=("read:analytics", "read:export"))),
        ("global=admin:apikeys", AccessEntry(resource="global", scopes=("admin:apikeys",))),
    ],
)
def test_access_entries(text: str, expected: AccessEntry) -> None:
    assert access_entry(text) == expected


@pytest.mark.parametrize("text", ["website", "=read:data", "website:abc=", ""])
def test_bad_access_entries(text: str) -> None:
    with pytest.raises(Exception, match="RESOURCE"):
        access_entry(text)


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800),
                                           ("1w", 604800), (" 2H ", 7200)])
def test_durations(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["1 hour", "-5m", "h", "1.5h", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(Exception, match="duration"):
        duration_seconds(text)


def test_moments() -> None:
    assert moment("30d", NOW) == NOW + timedelta(days=30)
    assert moment("2027-01-31T00:00:00Z") == datetime(2027, 1, 31, tzinfo=timezone.utc)
    assert moment("2027-01-31T01:00:00+01:00") == datetime(2027, 1, 31, tzinfo=timezone.utc)
    assert moment("2027-01-31") == datetime(2027, 1, 31, tzinfo=timezone.utc)


def test_top_level_scopes_are_global_grants() -> None:
    site = AccessEntry(resource="website", id="w", scopes=("read:data",))
    entries = join_access(["read:data", "admin:apikeys"], [site])
    assert entries[0] == AccessEntry(resource="global", scopes=("read:data", "admin:apikeys"))
    assert split_access(entries) == (["admin:apikeys", "read:data"],
                                     [{"resource": "website", "id": "w", "scopes": ["read:data"]}])


def test_settings_from_environment() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://x", "KEYLEDGER_TOKEN_PREFIX": "acme",
                              "KEYLEDGER_ARGON2_TIME_COST": "2"})
    assert (settings.database_url, settings.nats_url, settings.token_prefix, settings.argon2_time_cost) == (
        "postgresql://x", None, "acme", 2)


@pytest.mark.parametrize("env, message", [
    ({"KEYLEDGER_TOKEN_PREFIX": "Bad_Prefix"}, "KEYLEDGER_TOKEN_PREFIX"),
    ({"KEYLEDGER_ARGON2_TIME_COST": "lots"}, "whole number"),
    ({"KEYLEDGER_ARGON2_MEMORY_KIB": "1"}, "between"),
])
def test_bad_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)
