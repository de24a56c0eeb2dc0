"""Each NATS role of the embedded stack reads its own replies and no other role's.

Replies carry what the server sends one part of keyledger (the API's live key events with their argon2
hashes, the consumers' fetched messages, acks); with one shared ``_INBOX.>`` every role could read them all.
Here, with the stack's real per-role users: every role is refused every inbox but its own
(``_INBOX_<role>.>``); each part still does its work through keyledger's own code on its own inbox; the CLI
runs as the api user; and a stack started by an earlier keyledger gets the new permissions when it is reused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest

from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.config import NATS_ROLES, Settings, nats_inbox_prefix
from keyledger.services.devstack.nats import reload_nats
from keyledger.services.devstack.stack import StackInfo, stack_down, stack_up
from keyledger.services.messaging.connection import Bus, connect
from keyledger.services.messaging.consume import Consumer, Delivery
from keyledger.services.messaging.events import event_consumer
from keyledger.services.messaging.feed import EventFeed
from keyledger.services.messaging.streams import encode_message, subject_for
from keyledger.services.messaging.usage import UsagePublisher, usage_consumer
from tests.support.env import clean_env
from tests.support.factories import created
from tests.support.pipeline import isolated_settings, jetstream
from tests.support.wait import until

VIOLATION = "permissions violation for subscription to"
CHEAP_ARGON2 = {"KEYLEDGER_ARGON2_TIME_COST": "1", "KEYLEDGER_ARGON2_MEMORY_KIB": "1024"}


@pytest.fixture
def stack(stack_info: StackInfo | None) -> StackInfo:
    if stack_info is None:
        pytest.skip("the suite runs on external servers (TEST_DATABASE_URL/TEST_NATS_URL), not the embedded stack")
    return stack_info


async def subscribe_as(url: str, subjects: list[str], inbox_prefix: str, wait: float = 5.0) -> tuple[set[str], bool]:
    """Subscribe to each of ``subjects`` as the user of ``url``: the subjects the server refused, and whether a
    request (a JetStream API call, answered on the connection's inbox within ``wait`` seconds) got its reply."""
    said: list[str] = []

    async def on_error(exc: Exception) -> None:
        said.append(str(exc).lower())  # the client lowercases the server's -ERR

    nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False, inbox_prefix=inbox_prefix)
    try:
        for subject in subjects:
            await nc.subscribe(subject)
        await nc.flush()  # the server answers SUBs in order: every -ERR has arrived once the PONG has
        try:
            answered = bool((await nc.request("$JS.API.INFO", b"", timeout=wait)).data)
        except nats.errors.Error:
            answered = False
    finally:
        await nc.close()
    refused = {subject for subject in subjects if f'{VIOLATION} "{subject.lower()}"' in " ".join(said)}
    return refused, answered


@pytest.mark.parametrize("role", NATS_ROLES)
async def test_a_role_may_read_its_own_inbox_and_no_other(stack: StackInfo, role: str) -> None:
    own = nats_inbox_prefix(role)
    others = ["_INBOX.>", "_INBOX.*", "_INBOX.abc.*", ">", *(
        f"{nats_inbox_prefix(other)}.>" for other in NATS_ROLES if other != role)]
    refused, answered = await subscribe_as(stack.nats_role_urls[role], [*others, f"{own}.>", f"{own}.x.*"], own)
    assert refused == set(others) and answered, (refused, answered)
    # the shared inbox: no reply (a permitted one arrives in milliseconds, so a second is ample to see none)
    refused, answered = await subscribe_as(stack.nats_role_urls[role], [], "_INBOX", wait=1.0)
    assert not answered


@asynccontextmanager
async def as_role(url: str, role: str) -> AsyncIterator[Bus]:
    bus = await connect(url, f"keyledger-{role}", role=role)
    try:
        yield bus
    finally:
        await bus.close()


async def consumed(consumer: Consumer, count: int) -> list[Delivery]:
    """Run ``consumer`` until it has fetched and acked ``count`` messages."""
    got: list[Delivery] = []
    stop = asyncio.Event()

    async def process(batch: list[Delivery]) -> None:
        for delivery in batch:
            await delivery.ack()
        got.extend(batch)
        if len(got) >= count:
            stop.set()

    await asyncio.wait_for(consumer.run(stop, process), 20)
    return got


async def test_each_part_does_its_work_on_its_own_inbox(stack: StackInfo, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="keyledger.bus")  # where a connection reports a refusal
    settings, urls = isolated_settings(), stack.nats_role_urls
    key_id = uuid.uuid4().hex[:12]
    recorded = RecordedEvent(global_position=1, event_id=uuid.uuid4(), stream_id=key_id, version=1,
                             type="key.created", event=created(key_id), metadata=Metadata(),
                             recorded_at=datetime.now(UTC))
    async with (jetstream(stack.nats_url, settings) as (_, js), as_role(urls["relay"], "relay") as relay,
                as_role(urls["api"], "api") as api, as_role(urls["projector"], "projector") as projector,
                as_role(urls["sink"], "sink") as sink):
        try:
            ack = await relay._js.publish(subject_for(settings, key_id), encode_message(recorded), timeout=5,
                                          headers={"Nats-Msg-Id": str(recorded.event_id)})  # the ack: relay's inbox
            assert ack.seq == 1
            heard: list[RecordedEvent] = []

            async def on_event(event: RecordedEvent, seq: int) -> None:
                heard.append(event)

            feed = EventFeed(api, settings)  # the API's live feed: pushed to the API's inbox
            await feed.follow(0, on_event)
            await until(lambda: heard, timeout=10, what="the API's feed to deliver the event")
            await feed.stop()
            assert heard[0].event_id == recorded.event_id
            fetched = await consumed(event_consumer(projector, settings, "key-cache-projector", 10), 1)
            assert [d.seq for d in fetched] == [1]  # the projector's pull fetch: answered on its inbox
            publisher = UsagePublisher(api, settings)
            assert await publisher.ready()  # the usage stream, made by the API as it is
            assert await publisher.publish("batch-1", b"[]")  # acked on the API's inbox
            fetched = await consumed(usage_consumer(sink, settings, "audit-sink", 10), 1)
            assert [d.data for d in fetched] == [b"[]"]
        finally:
            await js.delete_stream(settings.usage_stream)
    assert VIOLATION not in caplog.text.lower(), caplog.text


def test_the_cli_works_as_the_api_user(stack: StackInfo, database_url: str) -> None:
    """``keyledger keys ...`` reaches NATS as the api part (it waits for the API replicas on the bus)."""
    env = clean_env({**CHEAP_ARGON2, "DATABASE_URL": database_url, "NATS_URL": stack.nats_url,
                     "KEYLEDGER_NATS_URL_API": stack.nats_role_urls["api"],
                     "KEYLEDGER_REPLICAS_SUBJECT": isolated_settings().replicas_subject})
    made = subprocess.run([sys.executable, "-m", "keyledger.services.cli", "keys", "create", "--name", "inbox",
                           "--scope", "read:data", "--json"], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "inbox"
    assert VIOLATION not in made.stderr.lower() and "warning" not in made.stderr.lower(), made.stderr


def test_a_stack_started_by_an_earlier_version_gets_the_inbox_permissions(tmp_path: Path) -> None:
    data_dir = tmp_path / "earlier"
    first = stack_up(data_dir, pg_settings={"fsync": "off"})
    try:
        config_path = data_dir / "nats.conf"
        config = json.loads(config_path.read_text())
        for user in config["authorization"]["users"]:  # as written before: every role on the shared inbox
            if "permissions" in user:
                user["permissions"]["subscribe"]["allow"] = ["_INBOX.>", *(
                    s for s in user["permissions"]["subscribe"]["allow"] if not s.startswith("_INBOX"))]
        config_path.write_text(json.dumps(config))
        pid = json.loads((data_dir / "stack.json").read_text())["nats_pid"]
        reload_nats(pid, data_dir)  # the running server now holds the earlier permissions
        refused, _ = asyncio.run(subscribe_as(first.nats_role_urls["sink"], ["_INBOX.>"], "_INBOX"))
        assert refused == set()  # the gap, as it was

        again = stack_up(data_dir, pg_settings={"fsync": "off"})  # an upgraded keyledger reuses the stack
        assert json.loads((data_dir / "stack.json").read_text())["nats_pid"] == pid  # not restarted
        refused, _ = asyncio.run(subscribe_as(again.nats_role_urls["sink"], ["_INBOX.>", "_INBOX_api.>"], "_INBOX"))
        assert refused == {"_INBOX.>", "_INBOX_api.>"}
        for role in NATS_ROLES:
            own = nats_inbox_prefix(role)
            refused, answered = asyncio.run(subscribe_as(again.nats_role_urls[role], [f"{own}.>"], own))
            assert (refused, answered) == (set(), True), role
        api = next(u for u in json.loads(config_path.read_text())["authorization"]["users"] if u["user"] == "api")
        assert api["permissions"]["subscribe"]["allow"] == ["_INBOX_api.>", Settings().replicas_subject]
    finally:
        stack_down(data_dir)

