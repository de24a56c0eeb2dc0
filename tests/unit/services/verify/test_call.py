"""``verify_call``: the one validation of a verify request, whatever transport carried it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from keyledger.domain.errors import ValidationError
from keyledger.domain.usage import FIELD_LIMITS
from keyledger.services.verify.call import verify_call

AT = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("asked", "message"), [
    ({"scope": "read:everything"}, "unknown scope 'read:everything'"),
    ({"scope": "r" * 65}, "scope is longer than 64 characters"),
    ({"data": "all_data"}, "unknown data kind 'all_data'"),
    ({"data": "d" * 65}, "data is longer than 64 characters"),
    ({"website_id": "w" * 201}, "website_id is longer than 200 characters"),
])
def test_what_decides_the_answer_is_refused_when_unknown_or_too_long(asked: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        verify_call(key="kl_x", **{"scope": "read:data", **asked}, at=AT)


def test_what_is_only_recorded_is_cut_to_what_the_audit_trail_keeps() -> None:
    call = verify_call(key="kl_x", scope="read:data", website_id="w" * 200, data="error_data", ip="1" * 500,
                       user_agent="u" * 5000, at=AT)
    assert (call.website_id, call.data) == ("w" * 200, "error_data")
    assert (call.ip, call.user_agent) == ("1" * FIELD_LIMITS["ip"], "u" * FIELD_LIMITS["user_agent"])
