"""Who may grant what: an organization's admin grants only what it holds itself.

A global admin (an admin key with no organization) is the operator's root and may grant anything,
so the bootstrap key works as before. An organization's admin may grant a (resource, id, scope)
only when its own access covers it: a global grant needs its own global grant of that scope, a
website grant its own grant on that website (or global), a data-kind grant its own grant on that
kind (or global). A per-key ``rate_limit`` above the admin's own limit needs a global admin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from keyledger.domain.access import DATA_KINDS, AccessEntry, check_access
from keyledger.domain.errors import Forbidden
from keyledger.domain.key import KeyState
from keyledger.domain.rate import DEFAULT_TIERS, limit_of


def check_grant(grantor: KeyState | None, entries: Iterable[AccessEntry] | None, rate_limit: int | None,
                tiers: Mapping[str, int] = DEFAULT_TIERS) -> None:
    """Raise Forbidden, naming the first scope or limit ``grantor`` may not grant; ``grantor`` None is
    the operator (the CLI), who may grant anything. ``entries`` None means access is not being set;
    ``rate_limit`` None or 0 means no per-key limit is being set."""
    if grantor is None or grantor.organization_id is None:
        return
    for entry in entries or ():
        for scope in entry.scopes:
            if not _holds(grantor, entry, scope):
                raise Forbidden(f"an organization's admin key can grant only what it holds itself: "
                                f"{scope} on {entry.label()} is not granted to it")
    own = limit_of(grantor, tiers)
    if rate_limit and rate_limit > own:
        raise Forbidden(f"a per-key rate_limit above this admin key's own ({own}/min) needs a global admin")


def _holds(grantor: KeyState, entry: AccessEntry, scope: str) -> bool:
    if entry.resource == "global":
        return any(own.resource == "global" and scope in own.scopes for own in grantor.access)
    website = entry.id if entry.resource == "website" else None
    data = entry.resource if entry.resource in DATA_KINDS else None
    return check_access(grantor.access, scope, website, data).allowed
