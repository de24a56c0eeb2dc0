"""Structured logs: one JSON object per line (``KEYLEDGER_LOG_FORMAT=text``: plain lines for a terminal).

Every line carries ``time`` (UTC), ``level``, ``process`` (api, relay, projector, audit-sink, cli...),
``pid``, ``logger`` and ``event`` (the message); a line written while a request is handled also carries
its ``request_id`` and, once a handler named the key it works on, ``key_id`` and ``start`` (the public
start of a token, never its secret). Extra fields given with ``extra={...}`` are added as they are.

No secret reaches a line: besides the code never logging one, the formatter replaces anything shaped
like a full key or verify credential (``<prefix>_<id><secret>``, longer than a start) with its first
characters and ``…``, and any ``scheme://user:password@`` with ``***``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

REQUEST: ContextVar[dict[str, str] | None] = ContextVar("keyledger_request", default=None)
_SECRET_SHAPED = re.compile(r"\b([a-z][a-z0-9]{0,15}_[A-Za-z0-9]{12})[A-Za-z0-9_-]{20,}")
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def secret_shaped(text: str) -> bool:
    """Whether ``text`` holds something shaped like a full key or credential."""
    return _SECRET_SHAPED.search(text) is not None


def redacted(text: str) -> str:
    """``text`` with secret-shaped tokens cut to their public part and URL passwords masked."""
    return _URL_PASSWORD.sub(r"\1***@", _SECRET_SHAPED.sub(r"\1…", text))


def begin_request(request_id: str) -> dict[str, str]:
    """Mark the current context (one request) with ``request_id``; returns its log fields."""
    fields = {"request_id": request_id}
    REQUEST.set(fields)
    return fields


def annotate(**fields: str | None) -> None:
    """Add fields (``key_id``, ``start``...) to the log lines of the current request."""
    current = REQUEST.get()
    if current is not None:
        current.update({name: value for name, value in fields.items() if value is not None})


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process, self._pid = process, os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname.lower(), "process": self._process, "pid": self._pid,
            "logger": record.name, "event": redacted(record.getMessage()),
        }
        line.update({name: redacted(value) for name, value in (REQUEST.get() or {}).items()})
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = redacted(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redacted(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level process[request id]: message key=value...`` for people."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        context = REQUEST.get() or {}
        moment = time.strftime("%H:%M:%S", time.localtime(record.created))
        where = f"{self._process}[{context['request_id']}]" if "request_id" in context else self._process
        extra = {**{k: v for k, v in context.items() if k != "request_id"},
                 **{k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}}
        tail = "".join(f" {k}={v}" for k, v in extra.items())
        text = f"{moment} {record.levelname.lower():<7} {where}: {record.getMessage()}{tail}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return redacted(text)


def configure(process: str, fmt: str = "json", level: int = logging.INFO) -> None:
    """Send every log record of this process to stderr, formatted as ``fmt`` (json or text). Library
    loggers stay at WARNING; keyledger's own at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter(process) if fmt == "text" else JsonFormatter(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("keyledger").setLevel(level)
