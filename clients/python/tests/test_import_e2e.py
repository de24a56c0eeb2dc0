"""``import_keys`` of both clients against a real server: exported rows (built here, with fresh secrets) are
imported, their secrets verify VALID, and a second import changes nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from typing import Any

from keyledger_client import AsyncKeyledger, Keyledger
from tests.support.server import ApiServer


def unkey_row(secret: str) -> dict[str, Any]:
    """A row of unkey's ``keys`` table: ``hash`` is the secret's SHA-256 in standard base64."""
    digest = base64.b64encode(hashlib.sha256(secret.encode()).digest()).decode()
    return {"id": "key_" + secrets.token_hex(6), "hash": digest, "start": secret[:6], "name": "sdk import",
            "workspaceId": "ws_sdk", "enabled": True, "permissions": ["read:data"]}


def test_the_sync_client_imports_rows(keyledger_server: ApiServer, admin_client: Keyledger,
                                      verify_credential: str) -> None:
    secret = f"uk_{secrets.token_urlsafe(24)}"
    rows = [unkey_row(secret), {"id": "key_bad", "hash": "nope"}]
    report = admin_client.import_keys(rows, format="unkey")
    assert (report.imported, report.failed) == (1, 1) and report.results[1].code == "VALIDATION_ERROR", report
    with Keyledger(keyledger_server.url, verify_credential) as verifier:
        answer = verifier.verify(secret, "read:data")
    assert answer.valid and answer.key_id == report.results[0].key_id, answer
    again = admin_client.import_keys(rows, format="unkey")
    assert (again.imported, again.unchanged) == (0, 1)


def test_the_async_client_imports_ndjson(keyledger_server: ApiServer, admin_key: str) -> None:
    secret = f"uk_{secrets.token_urlsafe(24)}"
    ndjson = json.dumps(unkey_row(secret)) + "\n"

    async def run() -> tuple[int, str | None]:
        async with AsyncKeyledger(keyledger_server.url, admin_key) as admin:
            report = await admin.import_keys(ndjson, format="unkey", organization_id="org_sdk")
            key = await admin.get(report.results[0].key_id or "")
            return report.imported, key.organization_id

    assert asyncio.run(run()) == (1, "org_sdk")
