"""Replay: rebuild the key cache from the event store (the source of truth, not NATS) and swap it in."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator

import msgspec

from keyledger.domain.events import AnyEvent
from keyledger.projections.key_cache import KeyCache, apply
from keyledger.services.storage.replay_source import ReplaySource

Progress = Callable[[int, int], None]  # (events replayed so far, events to replay)
_page_decoder: msgspec.json.Decoder[list[AnyEvent]] = msgspec.json.Decoder(list[AnyEvent])


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay did: events folded, keys written, up to which position, how fast."""

    events: int
    keys: int
    position: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Replay throughput."""
        return self.events / self.seconds if self.seconds > 0 else float("inf")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC. Folding allocates millions of acyclic objects (freed by refcounting);
    with the GC on, they trigger collections that rescan the whole, growing key model each time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def fold(source: ReplaySource, head: int, progress: Progress | None = None, page_size: int = 20_000,
               decode: Callable[[str], list[AnyEvent]] | None = None,
               ) -> tuple[KeyCache, int, dict[str, int] | None]:
    """Fold every event up to ``head`` into a new key cache: the model, the event count and each
    key's last position (None when some page was not gapless: the source then works them out).
    ``decode`` turns a page's JSON array into events (a benchmark may time it)."""
    decode = decode or _page_decoder.decode
    model: KeyCache = {}
    last: dict[str, int] | None = {}
    count = 0
    async for page in source.pages(head, page_size):
        events = decode(page.json)
        count += page.count
        if last is not None and page.end - page.start == len(events):  # gapless: event i is at start + 1 + i
            for event_position, event in enumerate(events, page.start + 1):
                apply(model, event)
                last[event.key_id] = event_position
        else:
            last = None
            for event in events:
                apply(model, event)
        if progress:
            progress(count, head)
    return model, count, last


async def replay(source: ReplaySource, progress: Progress | None = None, page_size: int = 20_000) -> ReplayResult:
    """Rebuild ``key_cache`` from the store and swap it in atomically; events committed meanwhile
    are applied in the swap, so nothing falls between the rebuilt table and the live projector."""
    with _gc_paused():
        return await _rebuild(source, progress, page_size)  # its model is freed (by refcounting) on return,
        # before the GC resumes: a collection over millions of live objects would cost ~1 s per 1M events


async def _rebuild(source: ReplaySource, progress: Progress | None, page_size: int) -> ReplayResult:
    started = time.perf_counter()
    head = await source.head_position()
    model, count, last_positions = await fold(source, head, progress, page_size)
    position, late = await source.swap_in(model, last_positions, head)
    return ReplayResult(events=count + late, keys=len(model), position=position, seconds=time.perf_counter() - started)
