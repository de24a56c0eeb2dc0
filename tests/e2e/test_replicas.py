"""Two API processes over one store: a revoke on one is refused by the other within milliseconds."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx

from tests.support.server import ApiServer
from tests.support.api import create, verify
from tests.support.pipeline import isolated_settings


def test_revoke_on_one_replica_is_refused_by_the_other_within_100ms(
        database_url: str, nats_url: str, tmp_path: Path) -> None:
    settings = isolated_settings()
    first = ApiServer(database_url, nats_url, settings, tmp_path)  # relay + projector; prints the bootstrap key
    second: ApiServer | None = None
    delays: list[float] = []
    try:
        first.wait_ready()
        second = ApiServer(database_url, nats_url, settings, tmp_path, workers=False).wait_ready()
        admin = first.bootstrap_secret
        assert admin is not None
        with httpx.Client(base_url=first.url) as one, httpx.Client(base_url=second.url) as two:
            for _ in range(5):
                key = create(one, admin, scopes=["read:data"])
                deadline = time.monotonic() + 10
                while not verify(two, key["secret"], "read:data")["valid"]:  # created on one, seen by two
                    assert time.monotonic() < deadline, "the second replica never saw the new key"
                assert one.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
                revoked_at = time.perf_counter()
                assert verify(one, key["secret"], "read:data")["code"] == "REVOKED"  # the handling replica: at once
                while (answer := verify(two, key["secret"], "read:data"))["valid"]:
                    assert time.perf_counter() - revoked_at < 10, "the second replica kept accepting the key"
                delays.append(time.perf_counter() - revoked_at)
                assert answer["code"] == "REVOKED"
    finally:
        if second is not None:
            second.stop()
        first.stop()
    print(f"revoke visible on the other replica after {[round(d * 1000, 1) for d in delays]} ms")
    assert statistics.median(delays) < 0.100
