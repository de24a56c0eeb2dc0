"""Verify credentials: tokens for the services that call ``POST /v1/verify``. Like keys, the secret is
shown once; only its SHA-256 is stored (a 190-bit random secret needs no slow hash)."""

from __future__ import annotations

import secrets

from keyledger.domain import token
from keyledger.domain.token import CREDENTIAL_PREFIX as CREDENTIAL_PREFIX  # klvc_<id><secret><checksum>
from keyledger.services.hashing import credential_digest
from keyledger.services.storage.verify_credentials import VerifyCredentials


async def issue(credentials: VerifyCredentials, name: str, created_by: str | None) -> tuple[str, str]:
    """A new verify credential: ``(id, secret)``; the secret exists only in this return value."""
    secret = token.generate(secrets.token_bytes, CREDENTIAL_PREFIX)
    credential_id = token.parse(secret, CREDENTIAL_PREFIX).key_id
    await credentials.add(credential_id, name, credential_digest(secret), created_by)
    return credential_id, secret
