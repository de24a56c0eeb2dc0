"""``bulk`` and ``allowed_networks`` of both clients against a real server: a dry run changes nothing, a revoke
by filter revokes each selected key, a filter matching nothing raises NotFoundError; a key created with
allowed networks verifies only from them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from keyledger_client import AsyncKeyledger, BulkFilter, Keyledger, NotFoundError
from tests.support.server import ApiServer


def test_the_sync_client_revokes_and_tags_in_bulk(keyledger_server: ApiServer, admin_client: Keyledger,
                                                  verify_credential: str) -> None:
    made = [admin_client.create("batch", scopes=["read:data"], organization_id="sdk-bulk") for _ in range(2)]
    tagged = admin_client.bulk("add_tags", ids=[k.id for k in made], tags=["sdk"])
    assert (tagged.succeeded, [r.code for r in tagged.results]) == (2, ["OK", "OK"])
    soon = datetime.now(UTC) + timedelta(days=3650)
    tried = admin_client.bulk("revoke", filter=BulkFilter(tag="sdk", created_before=soon), dry_run=True)
    assert tried.dry_run and tried.matched == 2 and admin_client.get(made[0].id).status == "active"
    done = admin_client.bulk("revoke", filter={"organization_id": "sdk-bulk", "tag": "sdk"}, reason="sdk test")
    assert (done.succeeded, done.failed) == (2, 0)
    assert {admin_client.get(k.id).status for k in made} == {"revoked"}
    with Keyledger(keyledger_server.url, verify_credential) as verifier:
        assert verifier.verify(made[0].secret, "read:data").code == "REVOKED"
    with pytest.raises(NotFoundError):
        admin_client.bulk("revoke", filter={"tag": "sdk"})  # all revoked: nothing left to select


def test_the_async_client_sets_allowed_networks_and_acts_in_bulk(keyledger_server: ApiServer, admin_key: str,
                                                                 verify_credential: str) -> None:
    async def scenario() -> None:
        async with AsyncKeyledger(keyledger_server.url, admin_key) as admin, \
                AsyncKeyledger(keyledger_server.url, verify_credential) as verifier:
            key = await admin.create("office", scopes=["read:data"], allowed_networks=["203.0.113.9/24"])
            assert key.allowed_networks == ["203.0.113.0/24"]
            assert (await verifier.verify(key.secret, "read:data", ip="203.0.113.50")).code == "VALID"
            assert (await verifier.verify(key.secret, "read:data", ip="198.51.100.1")).code == "FORBIDDEN"
            lifted = await admin.update(key.id, version=key.version, allowed_networks=[])
            assert lifted.allowed_networks == []
            assert (await verifier.verify(key.secret, "read:data")).code == "VALID"
            done = await admin.bulk("remove_tags", ids=[key.id, "nosuchkey000"], tags=["none"])
            assert [(r.code, r.ok) for r in done.results] == [("UNCHANGED", True), ("NOT_FOUND", False)]

    asyncio.run(scenario())
