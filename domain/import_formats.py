"""What each source's exported key row means in keyledger (pure): one JSON object a line, named as the
source's schema names its columns (camelCase or snake_case). docs/import.md has the table.

- databuddy: its ``apikey`` table (``keyHash``: SHA-256 in hex; ``scopes``; ``metadata.resources`` such as
  ``{"global": [...], "website:<id>": [...]}``, ``metadata.tags``, ``metadata.description``).
- better-auth: the api-key plugin's ``apikey`` table (``key``: SHA-256 in base64url without padding;
  ``permissions``: ``{"<resource>": ["<action>", ...]}``, as JSON text or an object).
- unkey: its ``keys`` table (``hash``: SHA-256 in base64; ``ratelimitLimit``/``ratelimitDuration``;
  ``remaining``/``refillInterval``/``refillAmount``/``refillDay``) with the key's ``permissions`` names.
- keyledger: keyledger's own field names plus ``secret_sha256`` (hex) or ``secret_hash`` (argon2id).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from keyledger.domain.access import DATA_KINDS, AccessEntry
from keyledger.domain.commands import MAX_RATE_LIMIT, CreateKey
from keyledger.domain.credits import Credits, Refill
from keyledger.domain.errors import ValidationError
from keyledger.domain.importing import ARGON2_HASH, ImportKey, derived_key_id, sha256_hash

Row = dict[str, Any]
DAY_MS = 86_400_000


def camel(row: Row) -> Row:
    """The row with snake_case column names (``key_hash``) as the schema's camelCase fields (``keyHash``)."""
    return {(_camel(name) if "_" in name else name): value for name, value in row.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_import(source: str, row: Row, organization_id: str | None, prefix: str) -> ImportKey:
    """The import command for one exported row of ``source``; ``organization_id``: the organization the
    key goes to (None: the row's own, where its source has one). ValidationError names the field at fault."""
    mapper = _MAPPERS.get(source)
    if mapper is None:
        raise ValidationError("format must be one of databuddy, better-auth, unkey, keyledger")
    return mapper(camel(row), organization_id, prefix)


def _databuddy(row: Row, organization_id: str | None, prefix: str) -> ImportKey:
    meta = _object(row.get("metadata"), "metadata")
    access = [*_global(_strings(row.get("scopes"), "scopes"))]
    for resource, scopes in _object(meta.get("resources"), "metadata.resources").items():
        access.append(_databuddy_resource(resource, _strings(scopes, f"metadata.resources.{resource}")))
    tags = _strings(meta.get("tags"), "metadata.tags")
    if row.get("type"):
        tags.append(f"type:{row['type']}")
    disabled = _disabled(row, "databuddy", row.get("revokedAt"))
    return _command("databuddy", row, organization_id or _text(row.get("organizationId")), prefix,
                    sha256_hash(row.get("keyHash"), "keyHash", "hex"), access, tags=tags,
                    description=_text(meta.get("description")) or "", disabled=disabled,
                    rate_limit=_per_minute(row, "rateLimitEnabled", "rateLimitMax", "rateLimitTimeWindow"),
                    owner_id=_text(row.get("userId")))


def _databuddy_resource(resource: str, scopes: list[str]) -> AccessEntry:
    if resource == "global":
        return AccessEntry(resource="global", scopes=tuple(scopes))
    if resource.startswith("website:") and resource[8:]:
        return AccessEntry(resource="website", id=resource[8:], scopes=tuple(scopes))
    if resource in DATA_KINDS:
        return AccessEntry(resource=resource, scopes=tuple(scopes))
    raise ValidationError(f"metadata.resources: {resource!r} has no keyledger meaning (global, website:<id> "
                          f"or a data kind)")


def _better_auth(row: Row, organization_id: str | None, prefix: str) -> ImportKey:
    meta = _object(row.get("metadata"), "metadata")
    scopes = [f"{action}:{resource}" for resource, actions in _object(row.get("permissions"), "permissions").items()
              for action in _strings(actions, f"permissions.{resource}")]
    organization = organization_id or _text(row.get("organizationId"))
    return _command("better-auth", row, organization, prefix, sha256_hash(row.get("key"), "key", "base64url"),
                    list(_global(scopes)), tags=_strings(meta.get("tags"), "metadata.tags"),
                    description=_text(meta.get("description")) or "", disabled=_disabled(row, "better-auth", None),
                    rate_limit=_per_minute(row, "rateLimitEnabled", "rateLimitMax", "rateLimitTimeWindow"),
                    credits=_credits(row.get("remaining"), row.get("refillAmount"),
                                     _interval_of_ms(row.get("refillInterval")), None),
                    owner_id=_text(row.get("userId")))


def _unkey(row: Row, organization_id: str | None, prefix: str) -> ImportKey:
    meta = _object(row.get("meta"), "meta")
    tags = _strings(meta.get("tags"), "meta.tags")
    if row.get("environment"):
        tags.append(f"environment:{row['environment']}")
    limit = None
    if row.get("ratelimitLimit") is not None:
        limit = _per_minute({"on": True, "max": row["ratelimitLimit"], "window": row.get("ratelimitDuration")},
                            "on", "max", "window")
    return _command("unkey", row, organization_id or _text(row.get("workspaceId")), prefix,
                    sha256_hash(row.get("hash"), "hash", "base64"),
                    list(_global(_strings(row.get("permissions"), "permissions"))), tags=tags,
                    description=_text(meta.get("description")) or "",
                    disabled=_disabled(row, "unkey", row.get("deletedAt")), rate_limit=limit,
                    credits=_credits(row.get("remaining"), row.get("refillAmount"), row.get("refillInterval"),
                                     row.get("refillDay")),
                    owner_id=_text(row.get("ownerId")))


def _keyledger(row: Row, organization_id: str | None, prefix: str) -> ImportKey:
    if isinstance(row.get("secretHash"), str) and row["secretHash"].startswith(ARGON2_HASH):
        secret_hash = row["secretHash"]
    else:
        secret_hash = sha256_hash(row.get("secretSha256"), "secret_sha256", "hex")
    access = [*_global(_strings(row.get("scopes"), "scopes"))]
    for entry in row.get("access") or []:
        entry = _object(entry, "access")
        access.append(AccessEntry(resource=str(entry.get("resource")), id=_text(entry.get("id")),
                                  scopes=tuple(_strings(entry.get("scopes"), "access.scopes"))))
    rate = row.get("rateLimit")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool)):
        raise ValidationError("rate_limit must be a whole number of requests per minute")
    command = _command("keyledger", row, organization_id or _text(row.get("organizationId")), prefix, secret_hash,
                       access, tags=_strings(row.get("tags"), "tags"), description=_text(row.get("description")) or "",
                       disabled=_text(row.get("revokeReason")) if row.get("status") == "revoked" else None,
                       rate_limit=rate, owner_id=_text(row.get("ownerId")))
    if secret_hash.startswith(ARGON2_HASH):  # a keyledger token names its key id: keep it
        create = command.create
        command = ImportKey(create=CreateKey(**{f: getattr(create, f) for f in create.__struct_fields__
                                                if f != "key_id"}, key_id=command.source_id),
                            source=command.source, source_id=command.source_id, disabled=command.disabled)
    return command


def _command(source: str, row: Row, organization_id: str | None, prefix: str, secret_hash: str,
             access: list[AccessEntry], *, tags: list[str], description: str, disabled: str | None,
             rate_limit: int | None, credits: Credits | None = None, owner_id: str | None = None) -> ImportKey:
    source_id = _text(row.get("id"))
    if not source_id:
        raise ValidationError("id is missing: the source's key id makes the import idempotent")
    start = _text(row.get("start")) or ""
    name = _text(row.get("name")) or (f"{start}… from {source}" if start else f"{source} key {source_id}")[:200]
    create = CreateKey(key_id=derived_key_id(source, organization_id, source_id), name=name,
                       organization_id=organization_id, access=tuple(access),
                       expires_at=_time(row.get("expiresAt") or row.get("expires"), "expires_at"),
                       secret_hash=secret_hash, prefix=prefix, start=start[:40], rate_limit=rate_limit,
                       description=description, tags=tuple(tags), credits=credits, owner_id=owner_id)
    return ImportKey(create=create, source=source, source_id=source_id, disabled=disabled)


def _global(scopes: list[str]) -> list[AccessEntry]:
    return [AccessEntry(resource="global", scopes=tuple(scopes))] if scopes else []


def _disabled(row: Row, source: str, revoked_at: object) -> str | None:
    if revoked_at:
        return f"revoked in {source} before the import"
    if row.get("enabled") is False or row.get("enabled") == 0:
        return f"disabled in {source} before the import"
    return None


def _per_minute(row: Row, enabled: str, maximum: str, window: str) -> int | None:
    """Requests per minute from ``maximum`` per ``window`` milliseconds (rounded up); None when off."""
    if row.get(enabled) in (False, 0) or row.get(maximum) is None:
        return None
    count, millis = row.get(maximum), row.get(window) or 60_000
    if not isinstance(count, int) or not isinstance(millis, int) or count < 1 or millis < 1:
        raise ValidationError(f"{maximum} and {window} must be positive whole numbers")
    return min(MAX_RATE_LIMIT, max(1, math.ceil(count * 60_000 / millis)))


def _interval_of_ms(value: object) -> str | None:
    if value is None:
        return None
    if value == DAY_MS:
        return "daily"
    if isinstance(value, int) and 28 * DAY_MS <= value <= 31 * DAY_MS:
        return "monthly"
    raise ValidationError("refillInterval: keyledger refills daily or monthly (86400000 ms or a month)")


def _credits(remaining: object, amount: object, interval: object, day: object) -> Credits | None:
    if remaining is None:
        return None
    if not isinstance(remaining, int) or isinstance(remaining, bool):
        raise ValidationError("remaining must be a whole number")
    refill = None
    if amount is not None and interval is not None:
        if interval not in ("daily", "monthly") or not isinstance(amount, int):
            raise ValidationError("refill: an amount and an interval of daily or monthly")
        refill = Refill(amount=amount, interval=interval,
                        day_of_month=day if interval == "monthly" and isinstance(day, int) else None)
    return Credits(remaining=remaining, refill=refill)


def _time(value: object, field: str) -> datetime | None:
    """A timestamp as sources export it: ISO 8601 text (UTC when it names no zone) or epoch milliseconds."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value / 1000, UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise ValidationError(f"{field} is not a time (ISO 8601 or epoch milliseconds)")


def _object(value: object, field: str) -> Row:
    """A JSON object, also when the source stores it as JSON text; {} for none."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValidationError(f"{field} is not JSON") from None
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be an object")
    return value


def _strings(value: object, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):  # a Postgres array as text: {read:data,track:events}
        value = [part for part in value.strip("{}").split(",") if part]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError(f"{field} must be a list of strings")
    return list(value)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


_MAPPERS: dict[str, Callable[[Row, str | None, str], ImportKey]] = {
    "databuddy": _databuddy, "better-auth": _better_auth, "unkey": _unkey, "keyledger": _keyledger}
