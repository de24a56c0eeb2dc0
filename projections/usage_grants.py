"""What each key was allowed to do: its allowed requests by (scope, website, data kind), with the last
time and how often. The read model behind the hygiene report's least-privilege suggestions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from keyledger.domain.usage import UsageEvent

CALLER_KEY = "key:"  # a verify caller that authenticated with an admin key: ``key:<id>``
CALLER_SCOPE = "admin:apikeys"  # what such a caller needed of its key

Grant = tuple[str, str, str, str]  # key id, scope, website id ("" when none named), data kind ("" when none)
UsedGrants = dict[Grant, tuple[datetime, int]]  # -> (last use, uses)


def count_grants(events: Iterable[UsageEvent], into: UsedGrants | None = None) -> UsedGrants:
    """``(key_id, scope, website_id, data) -> (last use, uses)`` of the requests keys were allowed: each
    ``VALID`` event (a verify, or an API call the key authenticated; its scope is the one that allowed it),
    and each verify whose caller was an admin key (``caller`` ``key:<id>``), as that key's use of
    ``admin:apikeys``."""
    found: UsedGrants = into if into is not None else {}
    get = found.get
    for event in events:
        if event.outcome == "VALID" and (key_id := event.key_id) is not None and (scope := event.scope) is not None:
            grant: Grant = (key_id, scope, event.website_id or "", event.data or "")
            at, seen = event.at, get(grant)
            found[grant] = (at, 1) if seen is None else (at if at > seen[0] else seen[0], seen[1] + 1)
        caller = event.caller
        if caller is not None and caller.startswith(CALLER_KEY):
            grant, at = (caller[len(CALLER_KEY):], CALLER_SCOPE, "", ""), event.at
            seen = get(grant)
            found[grant] = (at, 1) if seen is None else (at if at > seen[0] else seen[0], seen[1] + 1)
    return found
