"""A live dashboard session is a proven credential: a failure lockout of its address does not end or refuse
it, even in a process that has not checked its key yet (another worker or replica: argon2 once, then warm)."""

from __future__ import annotations

import msgspec
from litestar.testing import AsyncTestClient

from keyledger.domain.access import AccessEntry
from keyledger.services.clock import epoch
from keyledger.services.http.app import create_app
from keyledger.services.http.components import Components
from keyledger.services.http.dashboard.sessions import COOKIE
from keyledger.services.verify.throttles import FailureThrottle
from keyledger.services.verify.verifier import Verifier
from tests.support.asgi import sign_in
from tests.support.clock import SettableClock
from tests.support.hashing import CountingHasher
from tests.unit.services.http.fakes import memory_components

PEER = "testclient"  # the test client's address


def process(shared: Components, clock: SettableClock, hasher: CountingHasher) -> Components:
    """One API process over ``shared``'s keys and sessions (the table every process reads): its own verifier
    memory and failure counters."""
    return msgspec.structs.replace(
        shared, verifier=Verifier(shared.cache, hasher, shared.settings.token_prefix, clock),
        auth_failures=FailureThrottle(shared.settings.auth_failure_limit, clock=epoch(clock)))


async def test_a_session_is_served_while_its_address_is_locked_out(clock: SettableClock) -> None:
    shared = memory_components(clock)
    admin = (await shared.keys.create("admin", access=(AccessEntry(resource="global", scopes=("admin:apikeys",)),))
             ).token
    hasher = CountingHasher()
    first, second = process(shared, clock, hasher), process(shared, clock, hasher)
    async with AsyncTestClient(create_app(components=first)) as one, \
            AsyncTestClient(create_app(components=second)) as two:
        one.follow_redirects = two.follow_redirects = False
        assert (await sign_in(one, admin)).status_code == 303
        two.cookies.set(COOKIE, one.cookies[COOKIE])
        for _ in range(second.settings.auth_failure_limit):  # someone else at the same address
            assert (await two.get("/v1/keys", headers={"x-api-key": "kl_wrong"})).status_code == 401
        assert (await two.get("/v1/keys", headers={"x-api-key": admin})).status_code == 429  # cold there
        checks = hasher.verifies
        page = await two.get("/dashboard/keys")
        assert page.status_code == 200, page.text  # the session, cold in this process: checked once
        assert hasher.verifies == checks + 1
        assert (await two.get("/dashboard/keys")).status_code == 200 and hasher.verifies == checks + 1  # warm
        assert (await two.get("/v1/keys", headers={"x-api-key": "kl_wrong"})).status_code == 429
        assert second.auth_failures.refusal(PEER) is not None
