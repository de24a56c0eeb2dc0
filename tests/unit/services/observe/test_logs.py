"""The log formatters: one JSON object per line with the request's fields, and no secret in any line."""

from __future__ import annotations

import json
import logging
import random

import pytest

from keyledger.domain import token
from keyledger.services.observe.logs import JsonFormatter, TextFormatter, annotate, begin_request, redacted

# made when the tests run (never a whole secret in a file: the leak scanner would rightly flag it)
KEY = token.generate(random.Random(1).randbytes)
CREDENTIAL = token.generate(random.Random(2).randbytes, prefix=token.CREDENTIAL_PREFIX)
KEY_ID, START = token.parse(KEY).key_id, token.parse(KEY).start()


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("keyledger.test", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


@pytest.mark.parametrize("secret", [KEY, CREDENTIAL])
def test_secret_shaped_text_keeps_only_its_public_part(secret: str) -> None:
    cut = redacted(f"presented {secret}, rejected")
    start = secret[:secret.index("_") + 17]  # prefix, "_", key id and 4 secret characters
    assert cut == f"presented {start}, rejected"


def test_the_configured_prefix_is_redacted_in_every_line() -> None:
    custom = "acme_" + KEY.removeprefix("kl_")[:30]  # cut short: only a known prefix gives it away
    begin_request("req-3")
    line = JsonFormatter("api", token_prefix="acme").format(record("saw %s", custom, hint=KEY))
    assert custom not in line and "acme_" + START.removeprefix("kl_") in line and KEY not in line
    nested = JsonFormatter("api").format(record("saw", details={"presented": [KEY]}, seen=(KEY, 1)))
    assert KEY not in nested and START in nested and json.loads(nested)["seen"][1] == 1
    text = TextFormatter("api", token_prefix="acme").format(record("saw %s", custom))
    assert custom not in text and "acme_" + START.removeprefix("kl_") in text


def test_starts_ids_and_ordinary_words_are_left_alone() -> None:
    for text in (START, "usage_events_20261201", f"key {KEY_ID}", "KL_12871971bc",
                 "request 5f0c6a1e3b2d4c8e0000000000000001"):
        assert redacted(text) == text


def test_url_passwords_are_masked() -> None:
    assert redacted("nats://operator:hunter2@127.0.0.1:4222") == "nats://operator:***@127.0.0.1:4222"


def test_a_json_line_carries_the_request_and_never_the_secret() -> None:
    begin_request("req-1")
    annotate(key_id=KEY_ID, start=START, ignored=None)
    line = json.loads(JsonFormatter("api").format(record("bad key %s", KEY, status=401, hint=CREDENTIAL)))
    assert line["level"] == "warning" and line["process"] == "api" and line["logger"] == "keyledger.test"
    assert (line["request_id"], line["key_id"], line["start"], line["status"]) == (
        "req-1", KEY_ID, START, 401)
    assert line["time"].endswith("Z") and "ignored" not in line
    assert KEY not in json.dumps(line) and CREDENTIAL not in json.dumps(line)


def test_a_text_line_names_the_request() -> None:
    begin_request("req-2")
    text = TextFormatter("relay").format(record("published %d", 3, ms=1.5))
    assert "relay[req-2]: published 3" in text and "ms=1.5" in text
