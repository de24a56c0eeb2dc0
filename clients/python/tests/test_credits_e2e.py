"""Usage credits through the SDK against a real server: create and update with ``credits`` (None removes
them, left out they stay), ``cost`` on verify, ``credits.remaining`` and ``USAGE_EXCEEDED`` in the result,
with the sync and the async client alike."""

from __future__ import annotations

import asyncio

from keyledger_client import AsyncKeyledger, Credits, CreditsLeft, Keyledger, Refill
from tests.support.server import ApiServer


def test_credits_are_set_spent_and_removed_through_the_sdk(keyledger_server: ApiServer, admin_client: Keyledger,
                                                           verify_credential: str) -> None:
    refill = Refill(amount=50, interval="monthly", day_of_month=28)
    made = admin_client.create("metered", scopes=["read:data"], credits=Credits(remaining=3, refill=refill))
    assert made.credits == Credits(remaining=3, refill=refill)
    with Keyledger(keyledger_server.url, verify_credential) as service:
        spent = service.verify(made.secret, "read:data", cost=2)
        assert (spent.code, spent.credits) == ("VALID", CreditsLeft(remaining=1))
        short = service.verify(made.secret, "read:data", cost=2)
        assert (short.valid, short.code, short.credits) == (False, "USAGE_EXCEEDED", CreditsLeft(remaining=1))
    renamed = admin_client.update(made.id, version=made.version, name="still metered")
    assert renamed.credits is not None and renamed.credits.remaining == 1 and renamed.credits.refill == refill

    async def the_async_client() -> tuple[str, CreditsLeft | None, Credits | None]:
        async with AsyncKeyledger(keyledger_server.url, verify_credential) as service, \
                AsyncKeyledger(keyledger_server.url, admin_client_key(keyledger_server)) as admin:
            last = await service.verify(made.secret, "read:data")
            removed = await admin.update(made.id, version=None, credits=None)
            return last.code, last.credits, removed.credits

    assert asyncio.run(the_async_client()) == ("VALID", CreditsLeft(remaining=0), None)
    assert admin_client.get(made.id).credits is None
    with Keyledger(keyledger_server.url, verify_credential) as service:
        unlimited = service.verify(made.secret, "read:data", cost=5)
        assert (unlimited.code, unlimited.credits) == ("VALID", None)


def admin_client_key(server: ApiServer) -> str:
    assert server.bootstrap_secret is not None
    return server.bootstrap_secret


def test_owners_are_set_and_read_and_their_keys_share_them(keyledger_server: ApiServer, admin_client: Keyledger,
                                                            verify_credential: str) -> None:
    owner = admin_client.set_owner("cust-sdk", rate_limit=50, credits=Credits(remaining=2))
    assert (owner.owner_id, owner.rate_limit, owner.keys) == ("cust-sdk", 50, [])
    assert owner.credits is not None and owner.credits.remaining == 2
    made = admin_client.create("owned", scopes=["read:data"], owner_id="cust-sdk")
    assert made.owner_id == "cust-sdk" and [k.id for k in admin_client.list(owner_id="cust-sdk")] == [made.id]
    with Keyledger(keyledger_server.url, verify_credential) as service:
        first = service.verify(made.secret, "read:data", cost=2)
        assert first.owner is not None and first.owner.credits == CreditsLeft(remaining=0)
        assert first.owner.ratelimit is not None and first.owner.ratelimit.limit == 50
        refused = service.verify(made.secret, "read:data")
        assert refused.code == "USAGE_EXCEEDED" and "cust-sdk" in refused.reason
    kept = admin_client.set_owner("cust-sdk", credits=None)  # the rate limit stays
    assert (kept.rate_limit, kept.credits, kept.keys) == (50, None, [made.id])
    assert admin_client.get_owner("cust-sdk").version == 2
    cleared = admin_client.update(made.id, version=None, owner_id="")
    assert cleared.owner_id is None
