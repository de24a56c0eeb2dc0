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
