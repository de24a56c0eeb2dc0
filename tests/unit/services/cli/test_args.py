"""Parsing of CLI values (no I/O)."""

from datetime import UTC, datetime, timedelta

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.services.cli.args import access_entry, duration_seconds, moment

NOW = datetime(2026, 6, 1, tzinfo=UTC)


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
    assert moment("2027-01-31T00:00:00Z") == datetime(2027, 1, 31, tzinfo=UTC)
    assert moment("2027-01-31T01:00:00+01:00") == datetime(2027, 1, 31, tzinfo=UTC)
    assert moment("2027-01-31") == datetime(2027, 1, 31, tzinfo=UTC)
