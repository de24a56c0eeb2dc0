"""``GET /v1/audit/public-key`` and the signed ``GET /v1/audit/export`` over in-memory components."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from keyledger.services.audit.export_verify import verify_export
from keyledger.services.audit.signing import PublicKey, SigningKey
from keyledger.services.http.components import Components
from keyledger.services.storage.database import StorageError
from tests.support.notary import MemoryAnchors, MemorySigningKeys

Client = AsyncTestClient[Litestar]


async def test_the_public_key_is_served_without_credentials(client: Client, components: Components) -> None:
    answer = await client.get("/v1/audit/public-key")
    assert answer.status_code == 200
    body = answer.json()
    key = PublicKey.parse(body["public_key"])
    assert body == {"key_id": key.key_id, "algorithm": "Ed25519", "public_key": key.base64}
    assert key == (await components.notary.signing_key()).public  # the key that signs exports
    again = await client.get("/v1/audit/public-key", params={"key_id": key.key_id})
    assert again.json() == body


async def test_an_earlier_key_is_served_by_id_and_an_unknown_one_is_404(client: Client,
                                                                        components: Components) -> None:
    earlier = (await client.get("/v1/audit/public-key")).json()
    keys = components.notary._keys
    assert isinstance(keys, MemorySigningKeys)
    keys.add(SigningKey.generate())  # a newer key; this process keeps signing with the one it loaded
    assert (await client.get("/v1/audit/public-key", params={"key_id": keys.rows[-1].key_id})).json()["key_id"] == \
        keys.rows[-1].key_id
    assert (await client.get("/v1/audit/public-key", params={"key_id": earlier["key_id"]})).json() == earlier
    unknown = await client.get("/v1/audit/public-key", params={"key_id": "ed25519:0000000000000000"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"
    malformed = await client.get("/v1/audit/public-key", params={"key_id": "x'; DROP TABLE"})
    assert malformed.status_code == 400 and malformed.json()["code"] == "VALIDATION_ERROR"


async def test_an_export_is_signed_and_its_chain_head_recorded(client: Client, admin: str,
                                                               components: Components) -> None:
    anchors = components.notary._anchors
    assert isinstance(anchors, MemoryAnchors)
    for fmt in ("ndjson", "csv"):
        export = await client.get("/v1/audit/export", params={"format": fmt}, headers={"x-api-key": admin})
        assert export.status_code == 200
        key = PublicKey.parse((await client.get("/v1/audit/public-key")).json()["public_key"])
        report = verify_export([export.content], key)
        assert report.verified, report.problems
        anchor = anchors.anchors[-1]
        assert report.manifest is not None
        assert (anchor.manifest_digest, anchor.signature, anchor.key_id, anchor.record_count) == (
            report.manifest["digest"], report.manifest["signature"], key.key_id, 0)
    assert len(anchors.anchors) == 2


async def test_no_export_starts_without_the_signing_key(client: Client, admin: str, components: Components) -> None:
    keys = components.notary._keys
    assert isinstance(keys, MemorySigningKeys)

    async def outage(*_: object) -> object:
        raise StorageError("OperationalError 08006: connection refused")

    keys.newest_or_create = outage  # type: ignore[method-assign,assignment]
    refused = await client.get("/v1/audit/export", headers={"x-api-key": admin})
    assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
    assert (await client.get("/v1/audit/public-key")).status_code == 503
