"""The embedded stack's credentials: made on first start, kept in ``<data dir>/credentials.json`` (mode 0600).

Postgres gets a superuser password (migrations, replay, retention) and an application login role
``keyledger`` (member of ``keyledger_app``) that owns nothing; NATS gets one user per role, each
allowed only the subjects that role needs (:mod:`keyledger.services.devstack.nats`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from keyledger.services.devstack.process import StackError

APP_LOGIN = "keyledger"  # the Postgres login role of keyledger's processes
APP_GROUP = "keyledger_app"  # the privileges it has (granted by the migrations to this group)
NATS_ROLES = ("relay", "api", "projector", "sink", "watch")  # one NATS user each
NATS_OPERATOR = "operator"  # a NATS user with every permission, for operators' tools
FILE_NAME = "credentials.json"


@dataclass(frozen=True)
class Credentials:
    """Every password of one embedded stack."""

    postgres_superuser: str
    postgres_app: str
    nats: dict[str, str]  # NATS user -> password: the operator and each role


def load_or_create(data_dir: Path) -> Credentials:
    """The stack's credentials, made (and written mode 0600) when the data folder has none yet."""
    path = data_dir / FILE_NAME
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    made = Credentials(postgres_superuser=_password(), postgres_app=_password(),
                       nats={user: _password() for user in (NATS_OPERATOR, *NATS_ROLES)})
    _write(path, made)
    return made


def _write(path: Path, made: Credentials) -> None:
    """Write ``made`` to ``path`` (mode 0600) in one step."""
    body = json.dumps({"postgres": {"superuser": made.postgres_superuser, "app": made.postgres_app},
                       "nats": made.nats}, indent=2) + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)


def _read(path: Path) -> Credentials:
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(0o600)  # someone loosened it: only this user may read passwords
    try:
        raw = json.loads(path.read_text())
        users = raw["nats"]
        missing = [role for role in NATS_ROLES if role not in users]  # a role newer than the file (e.g. watch)
        made = Credentials(postgres_superuser=raw["postgres"]["superuser"], postgres_app=raw["postgres"]["app"],
                           nats={NATS_OPERATOR: users[NATS_OPERATOR],
                                 **{role: users[role] if role in users else _password() for role in NATS_ROLES}})
    except (ValueError, KeyError, TypeError) as exc:
        raise StackError(f"{path} is unreadable ({type(exc).__name__}); move it away to make new credentials "
                         "(and the data folder with it: its servers use the old ones)") from None
    if not all(_fits(value) for value in (made.postgres_superuser, made.postgres_app, *made.nats.values())):
        raise StackError(f"{path} holds a password with characters other than letters, digits, '-' and '_'")
    if missing:  # its user is added to a running NATS by nats.update_config
        _write(path, made)
    return made


def _password() -> str:
    return secrets.token_urlsafe(24)


def _fits(value: object) -> bool:
    """A password usable verbatim in a URL, a SQL literal and the NATS config."""
    return (isinstance(value, str) and 16 <= len(value) <= 128
            and all(c.isascii() and (c.isalnum() or c in "-_") for c in value))
