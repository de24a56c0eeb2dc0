"""A verify request as every transport hands it to the flow (:class:`VerifyCall`), validated in one place
(:func:`verify_call`): ``POST /v1/verify``, forward-auth and the in-process verifier refuse and cut alike."""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.domain.access import DATA_KINDS, SCOPES
from keyledger.domain.credits import check_cost
from keyledger.domain.errors import ValidationError
from keyledger.domain.usage import FIELD_LIMITS

MAX_PRESENTED_LENGTH = 4096  # the longest key a transport reads (a token is far shorter: longer is MALFORMED)
SCOPE_LENGTH, WEBSITE_ID_LENGTH, DATA_LENGTH = FIELD_LIMITS["scope"], FIELD_LIMITS["website_id"], FIELD_LIMITS["data"]
IP_LENGTH, USER_AGENT_LENGTH = FIELD_LIMITS["ip"], FIELD_LIMITS["user_agent"]


class VerifyCall(msgspec.Struct, frozen=True, gc=False):
    """What is asked (``key`` for ``scope`` on a website / data kind), for whom (the end client's ``ip`` and
    ``user_agent``), by whom (``caller`` and its address ``caller_ip``), and how it is recorded (``action``,
    ``request_id``), at ``at``: the clock reading the whole verify decides by. ``key`` is None when the end
    client presented none (forward-auth)."""

    key: str | None
    scope: str
    at: datetime
    website_id: str | None = None
    data: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    caller: str | None = None
    caller_ip: str | None = None
    request_id: str | None = None
    action: str = "verify"
    cost: int = 1  # usage credits a VALID answer spends (keys with credits; 0: check without spending)


def verify_call(*, key: str | None, scope: str, at: datetime, website_id: str | None = None, data: str | None = None,
                ip: str | None = None, user_agent: str | None = None, caller: str | None = None,
                caller_ip: str | None = None, request_id: str | None = None, action: str = "verify",
                cost: int = 1) -> VerifyCall:
    """The verify request, or :class:`ValidationError` (HTTP 400) when what decides the answer is not one
    keyledger knows: a ``scope`` or ``data`` kind it does not know, or a ``website_id`` longer than any
    grant's (``FIELD_LIMITS``). The end client's ``ip`` and ``user_agent`` decide nothing; they are only
    recorded (and the ip counted), so they are cut to what the audit trail keeps, never refused."""
    if len(scope) > SCOPE_LENGTH:
        raise ValidationError(f"scope is longer than {SCOPE_LENGTH} characters")
    if scope not in SCOPES:
        raise ValidationError(f"unknown scope {scope!r}")
    if website_id is not None and len(website_id) > WEBSITE_ID_LENGTH:
        raise ValidationError(f"website_id is longer than {WEBSITE_ID_LENGTH} characters")
    if data is not None:
        if len(data) > DATA_LENGTH:
            raise ValidationError(f"data is longer than {DATA_LENGTH} characters")
        if data not in DATA_KINDS:
            raise ValidationError(f"unknown data kind {data!r}")
    if ip is not None and len(ip) > IP_LENGTH:
        ip = ip[:IP_LENGTH]
    if user_agent is not None and len(user_agent) > USER_AGENT_LENGTH:
        user_agent = user_agent[:USER_AGENT_LENGTH]
    if cost != 1:
        check_cost(cost)
    return VerifyCall(key, scope, at, website_id, data, ip, user_agent, caller, caller_ip, request_id, action, cost)
