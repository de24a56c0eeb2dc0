"""``keyledger watch rebuild``: findings are derived data. Every usage event the usage table holds goes through
the rules again, in time order, into fresh profiles and findings that replace the stored ones in one
transaction (a finding that was there keeps its id, its acknowledgement and its automatic response). Nothing is
notified and nothing revoked: a rebuild only restates what the usage showed. The live watch waits meanwhile,
and then skips the batches the rebuild covered."""

from __future__ import annotations

import time

import msgspec

from keyledger.domain.finding_rules import Profile
from keyledger.domain.findings import Finding, Thresholds
from keyledger.domain.key import KeyState
from keyledger.services.storage.watch_store import WatchStore
from keyledger.services.watch.judge import fold_matches, guessed_keys, match_events


class Rebuilt(msgspec.Struct, frozen=True, kw_only=True):
    """What a rebuild did."""

    events: int  # usage events replayed
    keys: int  # keys with a profile
    findings: int
    seconds: float


async def rebuild(store: WatchStore, limits: Thresholds) -> Rebuilt:
    """Replace every profile and finding by those the usage table gives (see the module's docstring)."""
    started = time.perf_counter()
    profiles: dict[str, Profile] = {}
    findings: dict[str, Finding] = {}
    existing: dict[str, KeyState] = {}  # keys that wrong secrets named and that exist
    events = 0
    async with store.rebuilding() as tx:
        async for page in tx.usage():
            if unknown := guessed_keys(page) - existing.keys():
                existing.update(await tx.keys(unknown))
            fold_matches(match_events(page, profiles, existing, limits), findings, limits)
            events += len(page)
        stored = await tx.replace(profiles, findings.values())
    return Rebuilt(events=events, keys=len(profiles), findings=stored, seconds=time.perf_counter() - started)
