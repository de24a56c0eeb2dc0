"""NATS roles cannot read each other's replies: on the embedded stack every part of keyledger has its own NATS
user and its own reply subjects (``_INBOX_<role>.>``), and may subscribe only to its own.

Replies carry what the server sends a part: the API's live feed of key events (``key.created`` with the key's
name, organization and argon2 hash) arrives on the API's inbox. A real ``keyledger serve`` creates a key while
someone holding the sink's user subscribes to every inbox and to the API's; the server refuses both
subscriptions and nothing arrives, while the API goes on serving from its feed."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import nats
import pytest
from nats.aio.msg import Msg

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, verify
from tests.support.server import ApiServer
from tests.support.wait import until

pytestmark = pytest.mark.e2e
WANTED = ("_INBOX.>", "_INBOX_api.>", ">")  # every inbox, the API's own, everything


@pytest.fixture
def role_urls(stack_info: StackInfo | None, endpoints: Endpoints) -> dict[str, str]:
    if stack_info is None:
        pytest.skip("the suite runs on external servers (TEST_NATS_URL): their users are the operator's to set")
    return endpoints.nats_role_urls


async def test_the_sink_user_reads_none_of_the_apis_replies(api: ApiServer, client: httpx.Client, admin: str,
                                                           role_urls: dict[str, str]) -> None:
    errors: list[str] = []
    read: list[tuple[str, Msg]] = []  # (what the sink subscribed to, what it received)

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    sink = await nats.connect(role_urls["sink"], error_cb=on_error, allow_reconnect=False)
    try:
        for subject in WANTED:
            async def on_message(msg: Msg, subscribed: str = subject) -> None:
                read.append((subscribed, msg))

            await sink.subscribe(subject, cb=on_message)
        await sink.flush()
        name = f"inbox-{uuid.uuid4().hex[:8]}"
        key = await asyncio.to_thread(create, client, admin, name=name, organization_id="org-inbox",
                                      scopes=["read:data"])
        leaked = name.encode()

        def refused_or_leaked() -> bool:
            said = " ".join(errors).lower()  # the client lowercases the server's -ERR
            refusals = {subject for subject in WANTED
                        if f'permissions violation for subscription to "{subject.lower()}"' in said}
            return len(refusals) == len(WANTED) or any(leaked in msg.data for _, msg in read)

        await until(refused_or_leaked, timeout=10, what="the sink's subscriptions to be refused (or to leak)",
                    explain=lambda: f"errors: {errors}; read {len(read)} messages")
        assert not any(leaked in msg.data for _, msg in read), (
            f"the sink user read the API's key.created of {name!r} through its subscription to "
            f"{sorted({subscribed for subscribed, msg in read if leaked in msg.data})}")
        # the API's own feed still works: the key it created is served from the live cache
        answer = await asyncio.to_thread(verify, client, key["secret"], "read:data")
        assert answer["code"] == "VALID", answer
        await sink.flush()
        assert read == [], [(subscribed, msg.subject) for subscribed, msg in read]
    finally:
        await sink.close()
