"""Each worker role's durable consumer is named once (``bootstrap.roles``), and the embedded NATS grants
each role's user exactly that consumer: the one its process reads with."""

from __future__ import annotations

from keyledger.services.bootstrap.roles import PROJECTOR, RELAY, ROLES, SINK, WATCH, WEBHOOKS
from keyledger.services.bootstrap.runtime import bus_names
from keyledger.services.config import NATS_ROLES, Settings
from keyledger.services.devstack.nats import ANY_NAMES, DEFAULT_NAMES, permissions


def test_the_stack_grants_each_role_the_consumer_it_reads_with() -> None:
    granted = permissions(bus_names(Settings(nats_stream="EV_S", usage_stream="US_S")))
    assert f"$JS.API.CONSUMER.DURABLE.CREATE.EV_S.{PROJECTOR.consumer}" in granted["projector"]["publish"]
    assert f"$JS.API.CONSUMER.DURABLE.CREATE.US_S.{SINK.consumer}" in granted["sink"]["publish"]
    assert not any(SINK.consumer in subject for subject in granted["projector"]["publish"])
    assert not any(PROJECTOR.consumer in subject for subject in granted["sink"]["publish"])
    assert f"$JS.API.CONSUMER.DURABLE.CREATE.US_S.{WATCH.consumer}" in granted["watch"]["publish"]
    assert not any(WATCH.consumer in subject for subject in granted["sink"]["publish"])
    assert not any(SINK.consumer in subject for subject in granted["watch"]["publish"])
    assert not any(".EV_S" in subject for subject in granted["watch"]["publish"])  # no key events for the watch


def test_a_stack_started_without_names_grants_the_same_consumers() -> None:
    # `keyledger stack up` (and the test session's stack) start NATS with devstack's own names
    for names in (DEFAULT_NAMES, ANY_NAMES):
        assert (names.projector_consumer, names.sink_consumer, names.watch_consumer) == \
            (PROJECTOR.consumer, SINK.consumer, WATCH.consumer)


def test_every_worker_role_connects_as_a_user_of_its_own() -> None:
    assert list(ROLES)[:4] == ["relay", "projector", "audit-sink", "webhooks"]  # the commands: keyledger relay | ...
    assert sorted(role.nats_user for role in ROLES.values() if role.nats_user) == sorted(set(NATS_ROLES) - {"api"})
    assert WEBHOOKS.nats_user == ""  # Postgres only: no NATS user, no connection at all
    assert RELAY.consumer == "" and PROJECTOR.batch > 0 and SINK.batch > 0
