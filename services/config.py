"""Settings read from the environment, with sensible defaults."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import msgspec

from keyledger.domain.findings import KINDS as FINDING_KINDS
from keyledger.domain.findings import REPORTED_KINDS, Thresholds
from keyledger.domain.token import DEFAULT_PREFIX, is_valid_prefix


class SettingsError(ValueError):
    """A setting from the environment is invalid; the message names it."""


def switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    """An on/off setting: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case); unset or
    empty: ``default``; anything else is a SettingsError naming it."""
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), got {value[:20]!r}")


class Hidden:
    """A secret setting's value: equal by value, but never shown (repr and str hide it, so logs do too)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the one place that uses it."""
        return self._value

    def __repr__(self) -> str:
        return "Hidden('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hidden) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


NATS_ROLES = ("relay", "api", "projector", "sink", "watch")  # who connects to NATS, each with its own permissions


def nats_role_variable(role: str) -> str:
    """The environment variable with the NATS URL (and credentials) of one role."""
    return f"KEYLEDGER_NATS_URL_{role.upper()}"


def nats_inbox_prefix(role: str) -> str:
    """Where NATS replies to ``role`` arrive (``_INBOX_<role>.…``: JetStream acks, API answers, pushed and
    fetched messages): its user may subscribe to this inbox and no other, so no part reads another's replies."""
    assert role in NATS_ROLES, role
    return f"_INBOX_{role}"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable. ``database_url``/``nats_url`` None means the embedded stack."""

    database_url: str | None = None
    admin_database_url: str | None = None  # migrations, replay, retention (KEYLEDGER_ADMIN_DATABASE_URL)
    nats_url: str | None = None
    nats_role_urls: dict[str, str] = msgspec.field(default_factory=dict)  # KEYLEDGER_NATS_URL_<ROLE>
    token_prefix: str = DEFAULT_PREFIX
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 1
    # argon2 computations at once per process: half the cores (at least one), so wrong secrets that get past
    # the throttles can take no more than that from the warm verifies (KEYLEDGER_ARGON2_MAX_CONCURRENCY)
    argon2_max_concurrency: int = msgspec.field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    nats_stream: str = "KEYLEDGER_EVENTS"
    nats_subject_prefix: str = "keyledger.events"
    usage_stream: str = "KEYLEDGER_USAGE"
    usage_subject: str = "keyledger.usage"
    replicas_subject: str = "keyledger.replicas"  # where API replicas announce how far their key cache is
    stream_replicas: int = 0  # copies of each JetStream stream; 0: 3 on a NATS cluster, else 1
    audit_retention_days: int = 400
    hygiene_unused_days: int = 30  # KEYLEDGER_HYGIENE_UNUSED_DAYS: no use this long: "unused" (also the uses' window)
    hygiene_rotate_days: int = 90  # KEYLEDGER_HYGIENE_ROTATE_DAYS: a secret this old: "not_rotated"
    # KEYLEDGER_DATA_DIR: the embedded stack's data, the usage spool, serve's metrics files (relative: to the
    # working directory); read nowhere else
    data_dir: str = ".keyledger"
    spool_dir: str | None = None  # where undelivered usage events wait; default <data dir>/spool
    verify_token: str | None = None
    max_staleness: int = 5  # seconds a replica may go unconfirmed by the store before verify says UNAVAILABLE
    verify_open: bool = False  # POST /v1/verify without any caller credential (KEYLEDGER_VERIFY_OPEN)
    # KEYLEDGER_USAGE_DURABLE (default on; 0 turns it off): answer only once the request's usage event is safe
    usage_durable: bool = True
    sink_linger_ms: int = 200  # KEYLEDGER_SINK_LINGER_MS: how long the audit sink gathers messages for one transaction
    usage_inflight: int = 1  # KEYLEDGER_USAGE_INFLIGHT: durable usage batches awaiting JetStream's ack at once
    body_timeout: int = 10  # KEYLEDGER_BODY_TIMEOUT: seconds a request may take to send its body, then 408
    run_workers: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    rate_standard: int = 100
    rate_premium: int = 1_000
    rate_enterprise: int = 10_000
    auth_failure_limit: int = 20
    key_failure_limit: int = 10
    argon2_max_pending: int = 16
    audit_signing_key: Hidden | None = None  # base64 Ed25519 private key; None: the one kept in Postgres
    metrics_port: int | None = None  # relay's metrics port, projector +1, sink +2, webhooks +3, watch +4 (None: free)
    # KEYLEDGER_LOG_FORMAT: "auto" (human lines when stderr is a terminal, else JSON), "json" (one object per
    # line) or "text" (human lines)
    log_format: str = "auto"
    # KEYLEDGER_TRUSTED_PROXIES: networks (CIDRs) of the reverse proxies whose X-Forwarded-For/Forwarded name
    # the client; none: a request's address is its socket peer
    trusted_proxies: tuple[str, ...] = ()
    clock_start: datetime | None = None  # test-only: the clock starts at this instant (KEYLEDGER_TEST_CLOCK_START)
    # the watch's rules: KEYLEDGER_FINDINGS_<FIELD> for each field of Thresholds (finding_thresholds)
    findings: Thresholds = msgspec.field(default_factory=Thresholds)
    # KEYLEDGER_FINDINGS_AUTO_REVOKE: the kinds of finding whose key the watch revokes at once (none by default)
    findings_auto_revoke: tuple[str, ...] = ()
    # webhooks: the first retry after KEYLEDGER_WEBHOOK_RETRY_FIRST_MS, doubling, at most KEYLEDGER_WEBHOOK_RETRY_MAX
    # seconds apart, for KEYLEDGER_WEBHOOK_RETRY_FOR seconds (then the endpoint is failing)
    webhook_retry_first_ms: int = 1000
    webhook_retry_max: int = 3600
    webhook_retry_for: int = 86400
    # KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS: CIDRs webhooks may reach although not public (e.g. 10.0.0.0/8)
    webhook_allowed_networks: tuple[str, ...] = ()
    # leaked keys (docs/leaks.md): KEYLEDGER_LEAK_POLICY "revoke" (a confirmed leak revokes the key) or "notify";
    # GitHub's secret-scanning public keys from KEYLEDGER_LEAK_GITHUB_KEYS_FILE (then nothing is fetched) or else
    # KEYLEDGER_LEAK_GITHUB_KEYS_URL; KEYLEDGER_LEAK_REPORTS_PER_MINUTE: POST /v1/leaks per client address
    leak_policy: str = "revoke"
    leak_github_keys_file: str | None = None
    leak_github_keys_url: str = "https://api.github.com/meta/public_keys/secret_scanning"
    leak_reports_per_minute: int = 10
    credit_lease_idle_seconds: int = 5  # KEYLEDGER_CREDIT_LEASE_IDLE_SECONDS: unused this long, a lease returns

    def data_path(self, *parts: str) -> Path:
        """The data folder (``data_dir``, made absolute), or ``parts`` inside it."""
        return Path(self.data_dir).expanduser().absolute().joinpath(*parts)

    def rate_tiers(self) -> dict[str, int]:
        """Requests per minute for each tier."""
        return {"standard": self.rate_standard, "premium": self.rate_premium, "enterprise": self.rate_enterprise}


_INTS = {
    "max_staleness": ("KEYLEDGER_MAX_STALENESS", 0, 86_400),
    "argon2_time_cost": ("KEYLEDGER_ARGON2_TIME_COST", 1, 100),
    "argon2_memory_kib": ("KEYLEDGER_ARGON2_MEMORY_KIB", 8, 4 * 1024 * 1024),
    "argon2_parallelism": ("KEYLEDGER_ARGON2_PARALLELISM", 1, 64),
    "argon2_max_concurrency": ("KEYLEDGER_ARGON2_MAX_CONCURRENCY", 1, 256),
    "port": ("PORT", 1, 65535),
    "rate_standard": ("KEYLEDGER_RATE_STANDARD", 1, 10_000_000),
    "rate_premium": ("KEYLEDGER_RATE_PREMIUM", 1, 10_000_000),
    "rate_enterprise": ("KEYLEDGER_RATE_ENTERPRISE", 1, 10_000_000),
    "auth_failure_limit": ("KEYLEDGER_AUTH_FAILURE_LIMIT", 1, 1_000_000),
    "key_failure_limit": ("KEYLEDGER_KEY_FAILURE_LIMIT", 1, 1_000_000),
    "argon2_max_pending": ("KEYLEDGER_ARGON2_MAX_PENDING", 1, 10_000),
    "audit_retention_days": ("KEYLEDGER_AUDIT_RETENTION_DAYS", 1, 100_000),
    "hygiene_unused_days": ("KEYLEDGER_HYGIENE_UNUSED_DAYS", 1, 3_650),
    "hygiene_rotate_days": ("KEYLEDGER_HYGIENE_ROTATE_DAYS", 1, 3_650),
    "stream_replicas": ("KEYLEDGER_STREAM_REPLICAS", 0, 5),
    "metrics_port": ("KEYLEDGER_METRICS_PORT", 1, 65531),
    "sink_linger_ms": ("KEYLEDGER_SINK_LINGER_MS", 0, 10_000),
    "usage_inflight": ("KEYLEDGER_USAGE_INFLIGHT", 1, 64),
    "body_timeout": ("KEYLEDGER_BODY_TIMEOUT", 1, 3_600),
    "webhook_retry_first_ms": ("KEYLEDGER_WEBHOOK_RETRY_FIRST_MS", 1, 3_600_000),
    "webhook_retry_max": ("KEYLEDGER_WEBHOOK_RETRY_MAX", 1, 86_400),
    "webhook_retry_for": ("KEYLEDGER_WEBHOOK_RETRY_FOR", 1, 30 * 86_400),
    "leak_reports_per_minute": ("KEYLEDGER_LEAK_REPORTS_PER_MINUTE", 1, 1_000_000),
    "credit_lease_idle_seconds": ("KEYLEDGER_CREDIT_LEASE_IDLE_SECONDS", 1, 3_600),
}
LOG_FORMATS = ("auto", "json", "text")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {
        "database_url": env.get("DATABASE_URL") or None,
        "admin_database_url": env.get("KEYLEDGER_ADMIN_DATABASE_URL") or None,
        "nats_url": env.get("NATS_URL") or None,
        "nats_role_urls": {role: url for role in NATS_ROLES if (url := env.get(nats_role_variable(role)))},
        "token_prefix": env.get("KEYLEDGER_TOKEN_PREFIX", DEFAULT_PREFIX),
        "nats_stream": env.get("KEYLEDGER_NATS_STREAM") or "KEYLEDGER_EVENTS",
        "nats_subject_prefix": env.get("KEYLEDGER_NATS_SUBJECT_PREFIX") or "keyledger.events",
        "replicas_subject": env.get("KEYLEDGER_REPLICAS_SUBJECT") or "keyledger.replicas",
        "usage_stream": env.get("KEYLEDGER_USAGE_STREAM") or "KEYLEDGER_USAGE",
        "usage_subject": env.get("KEYLEDGER_USAGE_SUBJECT") or "keyledger.usage",
        "verify_token": env.get("KEYLEDGER_VERIFY_TOKEN") or None,
        "run_workers": env.get("KEYLEDGER_RUN_WORKERS", "").lower() in ("1", "true", "yes"),
        "verify_open": env.get("KEYLEDGER_VERIFY_OPEN", "").lower() in ("1", "true", "yes"),
        "usage_durable": switch(env, "KEYLEDGER_USAGE_DURABLE", default=True),
        "host": env.get("HOST") or "127.0.0.1",
        "data_dir": env.get("KEYLEDGER_DATA_DIR") or ".keyledger",
        "spool_dir": env.get("KEYLEDGER_SPOOL_DIR") or None,
        "log_format": (env.get("KEYLEDGER_LOG_FORMAT") or "auto").strip().lower(),
        "leak_policy": (env.get("KEYLEDGER_LEAK_POLICY") or "revoke").strip().lower(),
        "leak_github_keys_file": env.get("KEYLEDGER_LEAK_GITHUB_KEYS_FILE") or None,
        "leak_github_keys_url": env.get("KEYLEDGER_LEAK_GITHUB_KEYS_URL")
        or "https://api.github.com/meta/public_keys/secret_scanning",
    }
    values["trusted_proxies"] = trusted_proxies(env.get("KEYLEDGER_TRUSTED_PROXIES") or "")
    values["findings"] = finding_thresholds(env)
    values["findings_auto_revoke"] = auto_revoke(env.get("KEYLEDGER_FINDINGS_AUTO_REVOKE") or "")
    values["webhook_allowed_networks"] = allowed_networks(env.get("KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS") or "")
    if values["leak_policy"] not in ("revoke", "notify"):
        raise SettingsError("KEYLEDGER_LEAK_POLICY must be revoke or notify")
    if values["log_format"] not in LOG_FORMATS:
        raise SettingsError("KEYLEDGER_LOG_FORMAT must be auto, json or text")
    if signing_key := (env.get("KEYLEDGER_AUDIT_SIGNING_KEY") or "").strip():
        try:
            seed = base64.b64decode(signing_key, validate=True)
        except ValueError:
            seed = b""
        if len(seed) != 32:  # never echo the value: it is a private key
            raise SettingsError("KEYLEDGER_AUDIT_SIGNING_KEY must be the base64 of a 32-byte Ed25519 private key")
        values["audit_signing_key"] = Hidden(signing_key)
    if start := env.get("KEYLEDGER_TEST_CLOCK_START"):
        try:
            clock_start = datetime.fromisoformat(start.replace("Z", "+00:00"))
        except ValueError:
            raise SettingsError(f"KEYLEDGER_TEST_CLOCK_START must be an ISO time, got {start!r}") from None
        if clock_start.tzinfo is None:
            raise SettingsError("KEYLEDGER_TEST_CLOCK_START needs a time zone, e.g. 2030-01-01T00:00:05Z")
        values["clock_start"] = clock_start
    for field, name in (("nats_stream", "KEYLEDGER_NATS_STREAM"), ("usage_stream", "KEYLEDGER_USAGE_STREAM")):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(values[field])):
            raise SettingsError(f"{name} must be 1-64 letters, digits, '_' or '-'")
    for field, name in (("nats_subject_prefix", "KEYLEDGER_NATS_SUBJECT_PREFIX"),
                        ("usage_subject", "KEYLEDGER_USAGE_SUBJECT"),
                        ("replicas_subject", "KEYLEDGER_REPLICAS_SUBJECT")):
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", str(values[field])):
            raise SettingsError(f"{name} must be dot-separated tokens of letters, digits, '_' or '-'")
    if not is_valid_prefix(str(values["token_prefix"])):
        raise SettingsError("KEYLEDGER_TOKEN_PREFIX must be 1-16 lowercase letters/digits, starting with a letter")
    for field, (name, low, high) in _INTS.items():
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            number = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if not low <= number <= high:
            raise SettingsError(f"{name} must be between {low} and {high}")
        values[field] = number
    return Settings(**values)  # type: ignore[arg-type]


def trusted_proxies(raw: str) -> tuple[str, ...]:
    """``KEYLEDGER_TRUSTED_PROXIES``: CIDRs or single addresses, separated by commas or spaces, as
    normalized networks; a clear error for anything else, for a network with host bits set (``10.0.0.1/8``:
    which was meant?) and for one that holds every address (every client could name any address)."""
    networks: list[str] = []
    for item in raw.replace(",", " ").split():
        try:
            network = ipaddress.ip_network(item)
        except ValueError as exc:
            raise SettingsError(f"KEYLEDGER_TRUSTED_PROXIES: {item!r} is not a network (CIDR) or address: "
                                f"{exc}") from None
        if network.prefixlen == 0:
            raise SettingsError(f"KEYLEDGER_TRUSTED_PROXIES: {item!r} would trust every address, so any client "
                                "could name the address it is counted and recorded as; list your proxies' networks")
        networks.append(str(network))
    return tuple(networks)


def allowed_networks(raw: str) -> tuple[str, ...]:
    """``KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS``: CIDRs or addresses, separated by commas or spaces, that webhooks
    may reach although they are not public (a test's receiver on 127.0.0.0/8, a receiver on the private
    network); a clear error for anything else or for a network with host bits set."""
    networks: list[str] = []
    for item in raw.replace(",", " ").split():
        try:
            networks.append(str(ipaddress.ip_network(item)))
        except ValueError as exc:
            raise SettingsError(f"KEYLEDGER_WEBHOOK_ALLOWED_NETWORKS: {item!r} is not a network (CIDR) or address: "
                                f"{exc}") from None
    return tuple(networks)


def finding_thresholds(env: Mapping[str, str]) -> Thresholds:
    """The watch's thresholds: ``KEYLEDGER_FINDINGS_<FIELD>`` (e.g. ``KEYLEDGER_FINDINGS_MANY_NETWORKS``) for each
    field of :class:`~keyledger.domain.findings.Thresholds`, a whole number from 1 to 1,000,000 (else its
    default)."""
    values: dict[str, int] = {}
    for field in Thresholds.__struct_fields__:
        name = f"KEYLEDGER_FINDINGS_{field.upper()}"
        raw = (env.get(name) or "").strip()
        if not raw:
            continue
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1_000_000:
            raise SettingsError(f"{name} must be a whole number from 1 to 1000000, got {raw[:40]!r}")
        values[field] = int(raw)
    return Thresholds(**values)


def auto_revoke(raw: str) -> tuple[str, ...]:
    """``KEYLEDGER_FINDINGS_AUTO_REVOKE``: kinds of finding, separated by commas or spaces."""
    kinds = tuple(dict.fromkeys(raw.replace(",", " ").split()))
    watched = [kind for kind in FINDING_KINDS if kind not in REPORTED_KINDS]  # leaks: KEYLEDGER_LEAK_POLICY
    unknown = [kind for kind in kinds if kind not in watched]
    if unknown:
        raise SettingsError(f"KEYLEDGER_FINDINGS_AUTO_REVOKE: {unknown[0][:40]!r} is no kind of finding; the kinds are "
                            f"{', '.join(watched)} (a leaked key is revoked by KEYLEDGER_LEAK_POLICY=revoke)")
    return kinds


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]*)(?=@)", re.IGNORECASE)
_DSN_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def masked(url: str) -> str:
    """``url`` (a URL or a libpq ``key=value`` string) fit to print or log: any password is ``***``."""
    url = _URL_PASSWORD.sub(lambda m: m["head"] + "***", url)
    return _DSN_PASSWORD.sub(lambda m: m["head"] + "***", url)
