"""Process-unique ids: a usage event's, and a request's that came without one (``X-Request-Id``)."""

from __future__ import annotations

import itertools
import os

_ID_PREFIX, _ID_COUNTER = os.urandom(8).hex(), itertools.count()


def new_id() -> str:
    """A process-unique 32-hex-char id (random per-process prefix + counter): no syscall per call,
    unlike ``uuid4`` (``os.urandom``, which also releases the GIL to granian's I/O thread)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"
