"""Logs on stderr: human-readable lines when stderr is a terminal, one JSON object per line otherwise (a
file, a pipe, a log collector); ``KEYLEDGER_LOG_FORMAT=json`` or ``text`` chooses one whatever stderr is.

Every JSON line carries ``time`` (UTC), ``level``, ``process`` (api, relay, projector, audit-sink, cli...),
``pid``, ``logger`` and ``event`` (the message); a line written while a request is handled also carries
its ``request_id`` and, once a handler named the key it works on, ``key_id`` and ``start`` (the public
start of a token, never its secret). Extra fields given with ``extra={...}`` are added as they are.
A human line: ``HH:MM:SS level process[request id]: event key=value...`` (local time).

No secret reaches a line: besides the code never logging one, every field of every line passes the
redaction the usage events pass (:func:`keyledger.domain.redaction.redact`, under the deployment's token
prefix): anything shaped like a key or verify credential is replaced by its start; and any
``scheme://user:password@`` has its password replaced by ``***``.
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
from typing import Any, TextIO

from keyledger.domain.redaction import DEFAULT_REDACTION, Redaction, redact, redaction_for
from keyledger.domain.token import DEFAULT_PREFIX

REQUEST: ContextVar[dict[str, str] | None] = ContextVar("keyledger_request", default=None)
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def secret_shaped(text: str) -> bool:
    """Whether ``text`` holds something shaped like a key or credential (see :func:`redacted`)."""
    return redact(text) != text


def redacted(text: str, redaction: Redaction = DEFAULT_REDACTION) -> str:
    """``text`` with token-shaped parts cut to their start (:func:`keyledger.domain.redaction.redact`) and
    URL passwords masked."""
    return _URL_PASSWORD.sub(r"\1***@", redact(text, redaction))


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
    """One JSON object per record; ``token_prefix``: the deployment's, whose tokens are redacted."""

    def __init__(self, process: str, token_prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__()
        self._process, self._pid, self._redaction = process, os.getpid(), redaction_for(token_prefix)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname.lower(), "process": self._process, "pid": self._pid,
            "logger": record.name, "event": redacted(record.getMessage(), self._redaction),
        }
        line.update({name: redacted(value, self._redaction) for name, value in (REQUEST.get() or {}).items()})
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = redacted(value, self._redaction) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = redacted(self.formatException(record.exc_info), self._redaction)
        # the line once more as a whole: a value that is not a string (a dict, a list, an object shown by str)
        return redact(json.dumps(line, default=str, ensure_ascii=False), self._redaction)


class TextFormatter(logging.Formatter):
    """``time level process[request id]: message key=value...`` for people (redacted as the JSON lines)."""

    def __init__(self, process: str, token_prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__()
        self._process, self._redaction = process, redaction_for(token_prefix)

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
        return redacted(text, self._redaction)


def chosen_format(fmt: str, stream: TextIO) -> str:
    """The format of the lines written to ``stream``: ``fmt`` when it is ``json`` or ``text``; for ``auto``,
    ``text`` when ``stream`` is a terminal (a person reads it) and ``json`` otherwise."""
    if fmt != "auto":
        return fmt
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no file behind it, or closed: nobody at a terminal
        return "json"


def configure(process: str, fmt: str = "auto", level: int = logging.INFO, token_prefix: str = DEFAULT_PREFIX,
              stream: TextIO | None = None) -> None:
    """Send every log record of this process (and Python's warnings) to ``stream`` (default stderr), formatted
    as ``fmt`` (``auto``: see :func:`chosen_format`), tokens under ``token_prefix`` (and ``kl``, ``klvc``)
    redacted. Library loggers stay at WARNING; keyledger's own at ``level``."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    formatter = TextFormatter if chosen_format(fmt, stream) == "text" else JsonFormatter
    handler.setFormatter(formatter(process, token_prefix))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("keyledger").setLevel(level)
    logging.captureWarnings(True)  # a warning is a line in the same format, not a plain one in between
