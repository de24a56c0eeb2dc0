"""The replica roll: a command waits until every replica heard from holds its position, never for a replica
that left, is gone or cut off from the bus (it reads the store itself), and never longer than ``max_wait``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from keyledger.services.cache.replicas import FORGET_AFTER, SILENT_AFTER, STORE_POLL_BOUND, ReplicaRoll
from keyledger.services.messaging.replicas import Announcement
from tests.support.wait import until


class Monotonic:
    """The roll's clock: moved by the test, and counting its reads (a waiting command reads it each time it
    checks the replicas again)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


async def checked(clock: Monotonic, waiting: asyncio.Task[list[str]]) -> None:
    """Until ``waiting`` has checked the replicas as they are now (it read the clock after this call began) and
    gone back to waiting, or returned: never a fixed time."""
    seen = clock.reads
    await until(lambda: waiting.done() or clock.reads > seen, timeout=5, what="the command to check again")


class Channel:
    """Records what the roll announces; delivers nothing by itself."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.nudges: list[int] = []
        self.listener: Callable[[Announcement], None] | None = None

    async def listen(self, on_heard: Callable[[Announcement], None]) -> None:
        self.listener = on_heard

    async def announce(self, replica: str, position: int, nudge: int = 0) -> None:
        self.sent.append((replica, position))
        if nudge:
            self.nudges.append(nudge)


def roll(clock: Monotonic, max_wait: float = 5.0, position: Callable[[], int] = lambda: 0) -> ReplicaRoll:
    return ReplicaRoll(Channel(), position, max_wait=max_wait, monotonic=clock)


async def test_no_other_replica_means_no_wait() -> None:
    assert await roll(Monotonic()).wait_for(10) == []


async def test_waits_until_a_replica_announces_the_position() -> None:
    clock = Monotonic()
    replicas = roll(clock)
    replicas.heard(Announcement("b", 9))
    waiting = asyncio.create_task(replicas.wait_for(10))
    await checked(clock, waiting)
    assert not waiting.done()  # b is at 9
    replicas.heard(Announcement("b", 9))  # a heartbeat that says nothing new
    await checked(clock, waiting)
    assert not waiting.done()
    replicas.heard(Announcement("b", 10))
    assert await asyncio.wait_for(waiting, 5) == []
    assert replicas.timeouts == 0


async def test_a_waiting_command_nudges_the_others_and_a_nudge_reaches_the_cache() -> None:
    clock, channel = Monotonic(), Channel()
    replicas = ReplicaRoll(channel, lambda: 0, max_wait=5.0, monotonic=clock)
    assert await replicas.wait_for(7) == [] and channel.nudges == []  # nobody to nudge
    replicas.heard(Announcement("b", 9))
    assert await replicas.wait_for(7) == [] and channel.nudges == [7]
    told: list[int] = []
    replicas.on_nudge = told.append
    replicas.heard(Announcement("b", 9, nudge=12))
    replicas.heard(Announcement("b", 12))
    assert told == [12]


async def test_a_leaving_replica_is_not_waited_for() -> None:
    clock = Monotonic()
    replicas = roll(clock)
    replicas.heard(Announcement("b", 3))
    waiting = asyncio.create_task(replicas.wait_for(10))
    await checked(clock, waiting)
    assert not waiting.done()
    replicas.heard(Announcement("b", -1))
    assert await asyncio.wait_for(waiting, 5) == []
    assert len(replicas) == 0


async def test_a_silent_replica_is_waited_for_until_it_would_have_read_the_store() -> None:
    """Silent: killed, or cut off from the bus; the latter reads the store every half second, so after
    ``STORE_POLL_BOUND`` it holds the position even if it cannot say so."""
    clock = Monotonic()
    replicas = roll(clock)
    replicas.heard(Announcement("b", 3))
    clock.now += SILENT_AFTER + 0.5  # silent before the command
    waiting = asyncio.create_task(replicas.wait_for(10))
    await checked(clock, waiting)
    assert not waiting.done(), "released before a replica cut off from the bus read the store"
    clock.now += STORE_POLL_BOUND
    assert await asyncio.wait_for(waiting, 5) == []
    assert replicas.timeouts == 0


async def test_a_replica_heard_from_but_behind_holds_the_command_at_most_max_wait() -> None:
    clock = Monotonic()
    replicas = roll(clock, max_wait=2.0)
    replicas.heard(Announcement("b", 3))
    waiting = asyncio.create_task(replicas.wait_for(10))
    for _ in range(3):  # it keeps announcing an old position (e.g. its store is unreachable)
        await checked(clock, waiting)
        assert not waiting.done()
        clock.now += 0.5
        replicas.heard(Announcement("b", 3))
    await checked(clock, waiting)
    assert not waiting.done()
    clock.now += 1.0
    assert await asyncio.wait_for(waiting, 5) == ["b"]
    assert replicas.timeouts == 1


async def test_own_announcements_are_ignored_and_long_silent_replicas_forgotten() -> None:
    clock = Monotonic()
    replicas = roll(clock)
    replicas.heard(Announcement(replicas.replica, 0))
    assert len(replicas) == 0
    replicas.heard(Announcement("b", 0))
    clock.now += FORGET_AFTER + 1
    assert replicas.behind(10, clock.now) == []
    assert len(replicas) == 0


async def test_run_announces_when_the_position_moves_and_says_goodbye() -> None:
    channel, position = Channel(), [1]
    replicas = ReplicaRoll(channel, lambda: position[0], max_wait=5.0)
    stop = asyncio.Event()
    running = asyncio.create_task(replicas.run(stop))
    await until(lambda: channel.sent, timeout=5, what="the first announcement")
    assert channel.listener is not None
    position[0] = 7
    replicas.advanced()
    await until(lambda: (replicas.replica, 7) in channel.sent, timeout=5, what="the moved position announced")
    stop.set()
    await asyncio.wait_for(running, 5)
    assert channel.sent[-1] == (replicas.replica, -1)


async def test_a_heartbeat_wakes_no_waiting_command_and_a_move_wakes_each() -> None:
    """Every waiting command waits again at each wake-up: an announcement that moves no position (a heartbeat,
    a nudge from a replica whose own position stayed) wakes none of them; one that moves a position wakes all."""
    clock = Monotonic()
    replicas = roll(clock)
    replicas.heard(Announcement("b", 9))
    first, second = asyncio.create_task(replicas.wait_for(10)), asyncio.create_task(replicas.wait_for(11))
    await until(lambda: len(replicas._waiting) == 2, timeout=5, what="both commands to wait")
    waiting = [w for w in replicas._waiting if not w.done()]
    replicas.heard(Announcement("b", 9, nudge=12))
    assert waiting and not any(w.done() for w in waiting)
    replicas.heard(Announcement("b", 10))
    assert all(w.done() for w in waiting)
    assert await asyncio.wait_for(first, 5) == [] and not second.done()
    replicas.heard(Announcement("b", 11))
    assert await asyncio.wait_for(second, 5) == [] and replicas.timeouts == 0
