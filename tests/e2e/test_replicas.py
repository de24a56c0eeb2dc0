"""Two API processes over one store: a revoke on one is refused by the other, which never goes back
to accepting the key. (How fast that happens is measured by ``make bench``, not asserted here.)"""

from __future__ import annotations

import httpx

from tests.support.api import create, verify
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync


def test_revoke_on_one_replica_is_refused_by_the_other(api: ApiServer, admin: str, replica: StartServer) -> None:
    second = replica()
    with httpx.Client(base_url=api.url) as one, httpx.Client(base_url=second.url) as two:
        for _ in range(5):
            key = create(one, admin, scopes=["read:data"])
            secret = key["secret"]
            until_sync(lambda: verify(two, secret, "read:data")["valid"], timeout=10,  # noqa: B023 (called at once)
                       what="the second replica to accept the new key")
            assert one.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
            assert verify(one, key["secret"], "read:data")["code"] == "REVOKED"  # the handling replica: at once
            until_sync(lambda: verify(two, secret, "read:data")["code"] != "VALID", timeout=10,  # noqa: B023
                       interval=0.001, what="the second replica to refuse the revoked key")
            assert [verify(two, key["secret"], "read:data")["code"] for _ in range(3)] == ["REVOKED"] * 3
