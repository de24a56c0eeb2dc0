"""The embedded stack grants each NATS role the inbox its processes connect with."""

from __future__ import annotations

from keyledger.services.config import NATS_ROLES, nats_inbox_prefix
from keyledger.services.devstack.credentials import NATS_ROLES as STACK_ROLES
from keyledger.services.devstack.nats import inbox_prefix


def test_the_stack_and_the_processes_agree_on_every_roles_inbox() -> None:
    assert set(STACK_ROLES) == set(NATS_ROLES)
    assert {role: inbox_prefix(role) for role in STACK_ROLES} == {role: nats_inbox_prefix(role) for role in NATS_ROLES}
    assert len({inbox_prefix(role) for role in STACK_ROLES}) == len(STACK_ROLES)  # no two roles share one
