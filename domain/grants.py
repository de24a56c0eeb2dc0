"""Who may grant what: an organization's admin grants only what it holds itself.

A global admin (an admin key with no organization) is the operator's root and may grant anything,
so the bootstrap key works as before. An organization's admin may grant a (resource, id, scope)
only when its own access covers it: a global grant needs its own global grant of that scope, a
website grant its own grant on that website (or global), a data-kind grant its own grant on that
kind (or global). A per-key ``rate_limit`` above the admin's own limit needs a global admin.

The same rule holds for every command that hands a key's power to the admin or leaves it in the
key the admin changes: rotating a key gives whoever receives the new secret everything the key can
do, so an organization's admin may rotate only a key it could have granted in full (:func:`check_holds`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from keyledger.domain.access import DATA_KINDS, AccessEntry, check_access
from keyledger.domain.errors import Forbidden
from keyledger.domain.key import KeyState
from keyledger.domain.rate import DEFAULT_TIERS, limit_of


def check_grant(grantor: KeyState | None, entries: Iterable[AccessEntry] | None, rate_limit: int | None,
                tiers: Mapping[str, int] = DEFAULT_TIERS) -> None:
    """Raise Forbidden, naming the scopes or limit ``grantor`` may not grant; ``grantor`` None is
    the operator (the CLI), who may grant anything. ``entries`` None means access is not being set;
    ``rate_limit`` None or 0 means no per-key limit is being set."""
    if grantor is None or grantor.organization_id is None:
        return
    missing = _ungrantable(grantor, entries)
    if missing:
        raise Forbidden(f"an organization's admin key can grant only what it holds itself: "
                        f"{_listed(missing)} {'is' if len(missing) == 1 else 'are'} not granted to it")
    own = _exceeded_limit(grantor, rate_limit, tiers)
    if own is not None:
        raise Forbidden(f"a per-key rate_limit above this admin key's own ({own}/min) needs a global admin")


def check_holds(grantor: KeyState | None, access: Iterable[AccessEntry], rate_limit: int | None, action: str,
                tiers: Mapping[str, int] = DEFAULT_TIERS) -> None:
    """Raise Forbidden unless ``grantor`` could have granted all of a key's ``access`` and per-key
    ``rate_limit`` itself (the key as a command leaves it, e.g. the key being rotated); the message
    says what ``action`` was refused and names everything the admin lacks. The operator (None) and a
    global admin hold everything."""
    missing = lacking(grantor, access, rate_limit, tiers)
    if missing:
        raise Forbidden(f"an organization's admin key can {action} only a key whose every grant and rate limit "
                        f"it could grant itself; it lacks {_listed(missing)}")


def lacking(grantor: KeyState | None, access: Iterable[AccessEntry] | None, rate_limit: int | None,
            tiers: Mapping[str, int] = DEFAULT_TIERS) -> list[str]:
    """Everything of ``access`` and the per-key ``rate_limit`` that ``grantor`` could not grant, each
    named (``write:custom-sql on global``, ``a per-key rate_limit of 50000/min (its own: 100/min)``);
    empty when it could grant all of it, and always for the operator (None) or a global admin."""
    if grantor is None or grantor.organization_id is None:
        return []
    missing = _ungrantable(grantor, access)
    own = _exceeded_limit(grantor, rate_limit, tiers)
    if own is not None:
        missing.append(f"a per-key rate_limit of {rate_limit}/min (its own: {own}/min)")
    return missing


def _ungrantable(grantor: KeyState, entries: Iterable[AccessEntry] | None) -> list[str]:
    return [f"{scope} on {entry.label()}" for entry in entries or () for scope in entry.scopes
            if not _holds(grantor, entry, scope)]


def _exceeded_limit(grantor: KeyState, rate_limit: int | None, tiers: Mapping[str, int]) -> int | None:
    """The grantor's own limit when ``rate_limit`` (None or 0: no per-key limit) is above it, else None."""
    own = limit_of(grantor, tiers)
    return own if rate_limit and rate_limit > own else None


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _holds(grantor: KeyState, entry: AccessEntry, scope: str) -> bool:
    if entry.resource == "global":
        return any(own.resource == "global" and scope in own.scopes for own in grantor.access)
    website = entry.id if entry.resource == "website" else None
    data = entry.resource if entry.resource in DATA_KINDS else None
    return check_access(grantor.access, scope, website, data).allowed
