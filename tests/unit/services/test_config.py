"""Settings from an environment mapping (never the process's own)."""

import base64
import os
from datetime import UTC, datetime

import pytest

from keyledger.services.bootstrap.runtime import server_endpoints
from keyledger.services.config import SettingsError, load_settings, masked


def test_settings_from_environment() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://x", "KEYLEDGER_TOKEN_PREFIX": "acme",
                              "KEYLEDGER_ARGON2_TIME_COST": "2"})
    assert (settings.database_url, settings.nats_url, settings.token_prefix, settings.argon2_time_cost) == (
        "postgresql://x", None, "acme", 2)


def test_each_part_can_have_its_own_credentials() -> None:
    env = {"DATABASE_URL": "postgresql://app:a@db/k", "NATS_URL": "nats://n:1@mq",
           "KEYLEDGER_ADMIN_DATABASE_URL": "postgresql://owner:o@db/k", "KEYLEDGER_NATS_URL_RELAY": "nats://relay:r@mq"}
    endpoints = server_endpoints(load_settings(env))  # both URLs given: nothing is started
    assert (endpoints.database_url, endpoints.admin_database_url) == ("postgresql://app:a@db/k",
                                                                      "postgresql://owner:o@db/k")
    assert [endpoints.nats_url_for(role) for role in ("relay", "api", "sink")] == [
        "nats://relay:r@mq", "nats://n:1@mq", "nats://n:1@mq"]
    assert load_settings(endpoints.environment()) == load_settings(env)  # what `serve` hands its worker
    assert server_endpoints(load_settings({**env, "KEYLEDGER_ADMIN_DATABASE_URL": ""})).admin_database_url == (
        "postgresql://app:a@db/k")  # one role for everything, as before


@pytest.mark.parametrize("env, message", [
    ({"KEYLEDGER_TOKEN_PREFIX": "Bad_Prefix"}, "KEYLEDGER_TOKEN_PREFIX"),
    ({"KEYLEDGER_ARGON2_TIME_COST": "lots"}, "whole number"),
    ({"KEYLEDGER_ARGON2_MEMORY_KIB": "1"}, "between"),
])
def test_bad_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_a_test_clock_start_needs_an_iso_time_with_a_zone() -> None:
    start = load_settings({"KEYLEDGER_TEST_CLOCK_START": "2030-01-01T00:00:05Z"}).clock_start
    assert start == datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert load_settings({}).clock_start is None
    for bad, message in (("soon", "ISO time"), ("2030-01-01T00:00:05", "time zone")):
        with pytest.raises(SettingsError, match=message):
            load_settings({"KEYLEDGER_TEST_CLOCK_START": bad})


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://app:s3cret@db.example:5432/keyledger", "postgresql://app:***@db.example:5432/keyledger"),
    ("nats://relay:p%40ss@nats-1:4222", "nats://relay:***@nats-1:4222"),
    ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/postgres"),
    ("host=db user=app password=s3cret dbname=k", "host=db user=app password=*** dbname=k"),
    ("host=db password='s3 cret' dbname=k", "host=db password=*** dbname=k"),
])
def test_printed_urls_never_show_a_password(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_the_audit_signing_key_is_checked_and_never_shown() -> None:
    seed = base64.b64encode(os.urandom(32)).decode()  # made here: no private key is kept in a test file
    settings = load_settings({"KEYLEDGER_AUDIT_SIGNING_KEY": f" {seed}\n"})
    assert settings.audit_signing_key is not None and settings.audit_signing_key.reveal() == seed
    assert seed not in repr(settings) and seed not in str(settings.audit_signing_key)
    assert load_settings({}).audit_signing_key is None
    for bad in (seed[:-4], "not base64!", base64.b64encode(os.urandom(64)).decode()):
        with pytest.raises(SettingsError, match="KEYLEDGER_AUDIT_SIGNING_KEY") as refused:
            load_settings({"KEYLEDGER_AUDIT_SIGNING_KEY": bad})
        assert bad not in str(refused.value)


@pytest.mark.parametrize(("cores", "threads"), [(None, 1), (1, 1), (2, 1), (3, 1), (8, 4)])
def test_argon2_runs_on_half_the_cores_unless_told(monkeypatch: pytest.MonkeyPatch, cores: int | None,
                                                   threads: int) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert load_settings({}).argon2_max_concurrency == threads
    assert load_settings({"KEYLEDGER_ARGON2_MAX_CONCURRENCY": "3"}).argon2_max_concurrency == 3


@pytest.mark.parametrize(("value", "durable"), [(None, True), ("", True), ("1", True), ("on", True),
                                                ("0", False), ("false", False), ("NO", False), (" off ", False)])
def test_usage_events_are_durable_unless_turned_off(value: str | None, durable: bool) -> None:
    env = {} if value is None else {"KEYLEDGER_USAGE_DURABLE": value}
    assert load_settings(env).usage_durable is durable


def test_an_unreadable_durability_switch_is_refused() -> None:
    with pytest.raises(SettingsError, match="KEYLEDGER_USAGE_DURABLE must be 1 or 0"):
        load_settings({"KEYLEDGER_USAGE_DURABLE": "sometimes"})
