"""The NATS connection of one process (JetStream inside), behind ``Bus``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from keyledger.services.clock import sleep_or_stop
from keyledger.services.config import nats_inbox_prefix

log = logging.getLogger("keyledger.bus")


def servers(url: str) -> list[str]:
    """The servers of ``url``: one, or several comma-separated (a cluster), each with its credentials."""
    return [part.strip() for part in url.split(",") if part.strip()]


class BusError(Exception):
    """NATS is unreachable or refused an operation."""


class Bus:
    """A NATS connection that reconnects forever once it is up. Only ``keyledger.services.messaging``
    reaches inside (``_nc``, ``_js``)."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()

    @property
    def is_connected(self) -> bool:
        """Whether the connection is up right now."""
        return bool(self._nc.is_connected)

    @property
    def clustered(self) -> bool:
        """Whether the server this connection reached is part of a cluster (its INFO names one)."""
        return bool(self._nc._server_info.get("cluster"))

    @property
    def max_payload(self) -> int:
        """The largest message the server accepts."""
        return int(self._nc.max_payload)

    async def close(self) -> None:
        """Drain nothing, just close."""
        await self._nc.close()


def _inbox(role: str | None) -> dict[str, Any]:
    """The connect option that puts ``role``'s replies on its own inbox (none: NATS' shared ``_INBOX``)."""
    return {"inbox_prefix": nats_inbox_prefix(role)} if role is not None else {}


async def connect(url: str, name: str, on_reconnect: Callable[[], Awaitable[None]] | None = None, *,
                  role: str | None = None) -> Bus:
    """Connect to NATS (BusError if it is unreachable now); later outages are ridden out by reconnecting.
    ``role`` (relay, api, projector, sink): the part of keyledger connecting, whose replies then come back on
    its own inbox, the only one its NATS user may read; None for a plain client (tools, the operator)."""
    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", name, exc)

    options: dict[str, Any] = {
        "name": name, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.25,
        "connect_timeout": 2, "error_cb": on_error, "allow_reconnect": True, **_inbox(role),
    }
    if on_reconnect is not None:
        options["reconnected_cb"] = on_reconnect
    try:
        return Bus(await nats.connect(servers(url), **options))
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise BusError(f"NATS at {url} unreachable ({type(exc).__name__})") from exc


def connect_in_background(url: str, name: str, on_connect: Callable[[], Awaitable[None]], *,
                          role: str | None = None) -> tuple[Bus, asyncio.Task[None]]:
    """A Bus at once, connected as soon as NATS answers (retrying with backoff until then); ``on_connect``
    runs on the first connection and on every reconnection. For an API process that must start and serve
    from the store while NATS is away. Cancel the task (and close the bus) to give up. ``role`` as for
    :func:`connect`."""
    nc = Client()
    bus = Bus(nc)

    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", name, exc)

    options: dict[str, Any] = {
        "name": name, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.25, "connect_timeout": 2,
        "error_cb": on_error, "allow_reconnect": True, "reconnected_cb": on_connect, **_inbox(role),
    }

    async def keep_trying() -> None:
        delay = 0.2
        while True:
            try:
                await nc.connect(servers(url), **options)
                break
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                log.warning("NATS at %s unreachable (%s); retrying in %.1fs", url.rsplit("@", 1)[-1],
                            type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        await on_connect()

    return bus, asyncio.create_task(keep_trying())


async def connect_until(url: str, name: str, stop: asyncio.Event, *, role: str | None = None) -> Bus | None:
    """Connect to NATS (as ``role``, see :func:`connect`), retrying while it is unreachable; None if stopped
    first."""
    delay = 0.2
    while not stop.is_set():
        try:
            return await connect(url, name, role=role)
        except BusError as exc:
            log.warning("%s; retrying in %.1fs", exc, delay)
            await sleep_or_stop(stop, delay)
            delay = min(delay * 2, 5.0)
    return None
