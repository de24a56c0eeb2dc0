"""Which kind of line a process logs: human lines when its stderr is a terminal, JSON lines on anything else,
unless ``KEYLEDGER_LOG_FORMAT`` says which; redacted either way."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import warnings
from collections.abc import Iterator

import pytest

from keyledger.domain import token
from keyledger.services.config import SettingsError, load_settings
from keyledger.services.observe.logs import configure

# made when the tests run (never a whole secret in a file: the leak scanner would rightly flag it)
KEY = token.generate(random.Random(1).randbytes)
START = token.parse(KEY).start()


class Stream(io.StringIO):
    """Where the lines go: a terminal or not, as the test says."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``configure`` replaces the root logger's handlers: put back pytest's after each test."""
    root, own = logging.getLogger(), logging.getLogger("keyledger")
    handlers, levels = list(root.handlers), (root.level, own.level)
    yield
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    own.setLevel(levels[1])
    logging.captureWarnings(False)


def logged(fmt: str, terminal: bool) -> str:
    stream = Stream(terminal)
    configure("api", fmt, stream=stream)
    logging.getLogger("keyledger.test").warning("saw %s", KEY)
    return stream.getvalue()


@pytest.mark.parametrize(("fmt", "terminal", "human"), [
    ("auto", True, True), ("auto", False, False),  # the terminal decides
    ("json", True, False), ("text", False, True),  # KEYLEDGER_LOG_FORMAT overrides it
])
def test_a_terminal_gets_human_lines_anything_else_json(fmt: str, terminal: bool, human: bool) -> None:
    (line,) = logged(fmt, terminal).splitlines()
    if human:
        assert re.fullmatch(rf"\d\d:\d\d:\d\d warning +api: saw {START}", line), line
    else:
        parsed = json.loads(line)
        assert (parsed["process"], parsed["level"], parsed["event"]) == ("api", "warning", f"saw {START}")
    assert KEY not in line


@pytest.mark.parametrize("terminal", [True, False])
def test_a_warning_is_a_line_of_the_same_kind(terminal: bool) -> None:
    stream = Stream(terminal)
    configure("relay", stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"careful with {KEY}", UserWarning, stacklevel=1)
    (first, *_) = stream.getvalue().splitlines()
    if terminal:
        assert re.match(r"\d\d:\d\d:\d\d warning +relay: ", first), first
    else:
        assert json.loads(first)["logger"] == "py.warnings"
    assert KEY not in stream.getvalue() and START in stream.getvalue()


def test_the_setting() -> None:
    assert load_settings({}).log_format == "auto"
    assert load_settings({"KEYLEDGER_LOG_FORMAT": " JSON "}).log_format == "json"
    assert load_settings({"KEYLEDGER_LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(SettingsError, match="KEYLEDGER_LOG_FORMAT must be auto, json or text"):
        load_settings({"KEYLEDGER_LOG_FORMAT": "pretty"})
