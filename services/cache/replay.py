"""Replay: rebuild the key cache from the event store (the source of truth, not NATS) and swap it in.

The keys are folded in ``workers`` shares (by a hash of the key id, so each key's events stay in one
share), each in a process of its own that reads its share's events and COPYs its keys into the rebuild
table; with one worker the fold runs in this process. Either way the rebuilt table is swapped in once."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator

import msgspec

from keyledger.domain.events import AnyEvent
from keyledger.projections.key_cache import KeyCache, apply_all
from keyledger.services.cache.replay_processes import ReplayFailed, fold_in_processes
from keyledger.services.storage.database import open_database
from keyledger.services.storage.replay_source import ALL, ReplaySource, Share

__all__ = ["ReplayFailed", "ReplayResult", "default_workers", "fold", "replay"]

Progress = Callable[[int, int], None]  # (events replayed so far, events to replay)
_page_decoder: msgspec.json.Decoder[list[AnyEvent]] = msgspec.json.Decoder(list[AnyEvent])
_positions_decoder: msgspec.json.Decoder[list[int]] = msgspec.json.Decoder(list[int])


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay did: events folded, keys written, up to which position, how fast, in how many processes."""

    events: int
    keys: int
    position: int
    seconds: float
    workers: int = 1

    @property
    def events_per_second(self) -> float:
        """Replay throughput."""
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def default_workers() -> int:
    """Folding processes when none are asked for: one per core."""
    return os.cpu_count() or 1


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


async def fold(source: ReplaySource, head: int, progress: Progress | None = None, page_size: int = 5_000,
               decode: Callable[[str], list[AnyEvent]] | None = None, share: Share = ALL,
               ) -> tuple[KeyCache, int, dict[str, int]]:
    """Fold every event of ``share`` up to ``head`` into a new key cache: the model, the event count and
    each key's last position. ``decode`` turns a page's JSON array into events (a benchmark may time it).
    Pages of 5,000 events (~1 MB of JSON) cost ~15 % less CPU to fold than pages of 20,000: fewer fresh
    memory pages to fault in, and a page's objects still in the caches when they are applied."""
    decode = decode or _page_decoder.decode
    model: KeyCache = {}
    last: dict[str, int] = {}
    count = 0
    async for page in source.pages(head, page_size, share):
        events = decode(page.json)
        apply_all(model, last, events, _positions_decoder.decode(page.positions))
        count += len(events)
        if progress:
            progress(count, head)
    return model, count, last


async def fold_share(url: str, head: int, page_size: int, share: Share,
                     report: Callable[[int], None]) -> tuple[int, int]:
    """A folding process's work: fold ``share`` up to ``head`` and COPY its keys into the rebuild table
    (on a connection of its own); returns the events folded and the keys written."""
    name = f"keyledger-replay-{share.part + 1}-of-{share.parts}"
    with _gc_paused():
        async with open_database(url, min_size=1, max_size=1, application_name=name) as db:
            source = ReplaySource(db)
            model, count, last = await fold(source, head, lambda done, _: report(done), page_size, share=share)
            await source.write_rebuild(model, last)
            return count, len(model)


async def replay(source: ReplaySource, progress: Progress | None = None, page_size: int = 5_000,
                 workers: int | None = None) -> ReplayResult:
    """Rebuild ``key_cache`` from the store in ``workers`` processes (default: one per core) and swap it in
    atomically; events committed meanwhile are applied in the swap, so nothing falls between the rebuilt
    table and the live projector. ReplayFailed (nothing swapped in) if a folding process fails."""
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    with _gc_paused():
        return await _rebuild(source, progress, page_size, workers)  # its model is freed (by refcounting) on
        # return, before the GC resumes: a collection over millions of live objects would cost ~1 s per 1M events


async def _rebuild(source: ReplaySource, progress: Progress | None, page_size: int, workers: int) -> ReplayResult:
    started = time.perf_counter()
    head = await source.head_position()
    try:
        if workers == 1:
            model, count, last_positions = await fold(source, head, progress, page_size)
            keys = len(model)
            position, late = await source.swap_in(model, last_positions, head)
        else:
            await source.create_rebuild()
            count, keys = await fold_in_processes(fold_share, (source.url, head, page_size), workers,
                                                  None if progress is None else lambda done: progress(done, head))
            position, late = await source.swap_rebuilt(head)
    except BaseException:
        await source.drop_rebuild()  # whatever was written, nothing was swapped in
        raise
    return ReplayResult(events=count + late, keys=keys, position=position, seconds=time.perf_counter() - started,
                        workers=workers)
