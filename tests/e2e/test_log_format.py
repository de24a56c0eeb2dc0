"""One kind of line on a real ``keyledger serve``'s stderr: JSON lines when stderr is a pipe (a log collector),
human lines when it is a terminal; in both, the lines of serve itself, its API worker, the supervised relay,
projector and audit sink, and granian's own. The bootstrap secret goes to stdout only."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.support.api import create
from tests.support.server import ApiServer, StartServer
from tests.support.stderr import Stderr
from tests.support.wait import until_sync

PROCESSES = ("serve", "api", "relay", "projector", "audit-sink")
HUMAN = re.compile(r"\d\d:\d\d:\d\d (debug|info|warning|error|critical) +([a-z-]+)(\[[^\]]+\])?: \S")


def exercise(api: ApiServer) -> list[str]:
    """A key created and verified, a request that fails; the secrets that were around."""
    admin = api.bootstrap_secret
    assert admin is not None, api.log()
    with httpx.Client(base_url=api.url, timeout=10) as client:
        key = create(client, admin, scopes=["read:data"])
        verified = client.post("/v1/verify", json={"key": key["secret"], "scope": "read:data"})
        assert verified.json()["code"] == "VALID", verified.text
        assert client.get("/v1/keys/nope", headers={"x-api-key": admin}).status_code == 404
    return [admin, key["secret"]]


def processes(stderr: Stderr) -> set[str]:
    """The processes that wrote a line on ``stderr``, in either kind of line."""
    seen = set()
    for line in stderr.lines():
        if match := HUMAN.match(line):
            seen.add(match.group(2))
        elif match := re.search(r'"process": "([a-z-]+)"', line):
            seen.add(match.group(1))
    return seen


def json_lines(stderr: Stderr) -> list[dict[str, Any]]:
    """Every line of ``stderr`` as JSON; fails on the first line that is not a JSON object."""
    parsed = []
    for line in stderr.lines():
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        assert isinstance(value, dict), f"not a JSON line on stderr: {line!r}\n{stderr.text()}"
        parsed.append(value)
    return parsed


def test_stderr_on_a_pipe_gets_only_json_lines(start_server: StartServer) -> None:
    stderr = Stderr()
    api = start_server(stderr=stderr)
    secrets = exercise(api)
    until_sync(lambda: processes(stderr) >= set(PROCESSES), timeout=30, what="a line of every process",
               explain=stderr.text)
    api.stop()
    lines = json_lines(stderr)
    assert all({"time", "level", "process", "pid", "logger", "event"} <= set(line) for line in lines)
    serve = [line["event"] for line in lines if line["process"] == "serve"]
    assert any(event.startswith("keyledger API on http://") for event in serve), serve  # once a plain line
    assert any(line["logger"] == "_granian" for line in lines), stderr.text()  # granian's own lines too
    for secret in secrets:
        assert secret not in stderr.text()
    assert secrets[0] in api.log().partition("--- stderr")[0]  # the bootstrap key: on stdout, on purpose


def test_stderr_on_a_terminal_gets_only_human_lines(start_server: StartServer) -> None:
    stderr = Stderr(terminal=True)
    api = start_server(stderr=stderr)
    secrets = exercise(api)
    until_sync(lambda: processes(stderr) >= set(PROCESSES), timeout=30, what="a line of every process",
               explain=stderr.text)
    api.stop()
    assert stderr.lines()
    for line in stderr.lines():
        assert HUMAN.match(line), f"not a human line on the terminal: {line!r}\n{stderr.text()}"
    text = stderr.text()
    assert "serve: keyledger API on http://" in text and "api[" in text and ": key create answered 201" in text
    for secret in secrets:
        assert secret not in text
