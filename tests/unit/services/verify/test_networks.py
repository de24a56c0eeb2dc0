"""The verify path's allowlist check: its fast address reader answers as the domain's, a changed list is parsed
anew, and answers are remembered per key and address."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from keyledger.domain.key import KeyState
from keyledger.domain.networks import NO_IP, parse_address
from keyledger.services.verify.networks import NetworkCheck, fast_address

AT = datetime(2030, 1, 1, tzinfo=UTC)
KEY = KeyState(key_id="abcdefghijkl", version=1, name="k", organization_id=None, access=(), expires_at=None,
               secret_hash="h", prefix="kl", start="kl_abc", created_at=AT, updated_at=AT,
               allowed_networks=("203.0.113.0/24", "2001:db8::/32"))


@pytest.mark.parametrize("text", ["203.0.113.7", " 203.0.113.7 ", "2001:db8::1", "::ffff:203.0.113.7", "::1",
                                  "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1",
                                  "fe80::1%eth0", "2001:db8::g", "", "garbage", "1.2.3.4/24", "[::1]"])
def test_the_fast_reader_answers_as_the_domain(text: str) -> None:
    assert fast_address(text) == parse_address(text)


def test_inside_outside_and_a_changed_list() -> None:
    check = NetworkCheck()
    assert check.refusal(KEY, "203.0.113.7") is None
    assert check.refusal(KEY, "::ffff:203.0.113.8") is None
    assert check.refusal(KEY, "2001:db8:1::1") is None
    assert check.refusal(KEY, "198.51.100.7") == "ip 198.51.100.7 is outside the networks this key is limited to"
    assert check.refusal(KEY, None) == NO_IP
    moved = msgspec.structs.replace(KEY, version=2, allowed_networks=("198.51.100.0/24",))
    assert check.refusal(moved, "198.51.100.7") is None  # the new list, not the remembered one
    assert check.refusal(moved, "203.0.113.7") is not None
