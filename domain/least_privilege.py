"""Least privilege from real use, pure: the narrowest access that allows every request a key was allowed lately
and nothing its access did not allow (:func:`least_privilege`), read by the rule of
:func:`~keyledger.domain.access.check_access`."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from keyledger.domain.access import DATA_KINDS, MAX_ACCESS_ENTRIES, MAX_RESOURCE_ID_LENGTH, AccessEntry

RATE_SCOPE_PREFIX = "rate:"  # rate tiers: the key's limit, used by every request of the key, so always kept
Target = tuple[str, str | None]  # an access entry's (resource, id)
GLOBAL: Target = ("global", None)


class Use(msgspec.Struct, frozen=True, gc=False):
    """A request the key was allowed (a VALID verify, or an API call it authenticated): ``scope`` on the
    website and/or data kind the request named."""

    scope: str
    website_id: str | None = None
    data: str | None = None


class Suggestion(msgspec.Struct, frozen=True, kw_only=True):
    """The narrowest ``access`` that allows every use, and the held grants (``unused``) it drops."""

    access: tuple[AccessEntry, ...]
    unused: tuple[AccessEntry, ...]


def narrower(held: tuple[AccessEntry, ...], uses: Iterable[Use]) -> Suggestion | None:
    """:func:`least_privilege` when it is narrower than ``held`` (it drops a grant), else None."""
    suggestion = least_privilege(held, uses)
    return suggestion if suggestion is not None and suggestion.unused else None


def least_privilege(held: tuple[AccessEntry, ...], uses: Iterable[Use]) -> Suggestion | None:
    """The narrowest access that allows every use the key's ``held`` access still allows, by the rule of
    :func:`~keyledger.domain.access.check_access`: a use naming a website gets that website's entry, else
    one naming a data kind that kind's entry, else a global grant; each only where ``held`` covers it
    (a global grant of the scope, or the same entry), so the suggestion never allows a request ``held`` does
    not. Rate-tier scopes (the key's limit; they allow no request) are kept: where held when that entry stays,
    else as global grants, and are never listed as unused; a narrow grant that a kept global grant covers is
    left out; past
    :data:`MAX_ACCESS_ENTRIES` entries, the scopes held globally that need the most entries are kept global.
    None when no use is allowed by ``held`` (nothing to learn from)."""
    asked = set(uses)
    if not asked:
        return None
    globally = {scope for entry in held if entry.resource == "global" for scope in entry.scopes}
    owned: dict[Target, set[str]] = {}
    for entry in held:
        owned.setdefault((entry.resource, entry.id), set()).update(entry.scopes)
    wanted: dict[Target, dict[str, None]] = {}
    for use in asked:
        target = _narrowest(use, globally, owned)
        if target is not None:
            wanted.setdefault(target, {})[use.scope] = None
    if not wanted:
        return None
    for entry in held:  # rate tiers: kept where held when the entry stays, else as a global grant
        for scope in entry.scopes:
            if scope.startswith(RATE_SCOPE_PREFIX):
                target = (entry.resource, entry.id)
                (wanted[target] if target in wanted else wanted.setdefault(GLOBAL, {}))[scope] = None
    kept = wanted.get(GLOBAL, {})
    for target, scopes in wanted.items():
        if target != GLOBAL:
            for scope in kept:
                scopes.pop(scope, None)
    _within_cap(wanted, globally)
    access = tuple(AccessEntry(resource=resource, id=id_, scopes=tuple(sorted(scopes)))
                   for (resource, id_), scopes in sorted(wanted.items(), key=_order) if scopes)
    suggested = {(entry.resource, entry.id): set(entry.scopes) for entry in access}
    unused = tuple(AccessEntry(resource=entry.resource, id=entry.id, scopes=dropped) for entry in held
                   if (dropped := tuple(s for s in entry.scopes if not s.startswith(RATE_SCOPE_PREFIX)
                                        and s not in suggested.get((entry.resource, entry.id), ()))))
    return Suggestion(access=access, unused=unused)


def _narrowest(use: Use, globally: set[str], owned: dict[Target, set[str]]) -> Target | None:
    """The narrowest entry that allows ``use`` and that the held access covers, else None."""
    scope, website, data = use.scope, use.website_id, use.data
    if website is not None and _is_website_id(website) and (
            scope in globally or scope in owned.get(("website", website), ())):
        return ("website", website)
    if data in DATA_KINDS and (scope in globally or scope in owned.get((data, None), ())):
        return (data, None)
    return GLOBAL if scope in globally else None


def _is_website_id(value: str) -> bool:
    """Whether a website entry may name ``value`` (as :func:`~keyledger.domain.access.validate_access` checks)."""
    return bool(value.strip()) and len(value) <= MAX_RESOURCE_ID_LENGTH and value.isprintable()


def _within_cap(wanted: dict[Target, dict[str, None]], globally: set[str]) -> None:
    """Keep the suggestion within :data:`MAX_ACCESS_ENTRIES`: while it has more entries, the scope held
    globally that the most narrow entries grant becomes a global grant again (in place)."""
    while sum(1 for scopes in wanted.values() if scopes) > MAX_ACCESS_ENTRIES:
        spread: dict[str, int] = {}
        for target, scopes in wanted.items():
            for scope in scopes:
                if target != GLOBAL and scope in globally:
                    spread[scope] = spread.get(scope, 0) + 1
        if not spread:
            return
        widest = max(spread, key=lambda scope: (spread[scope], scope))
        for target, scopes in wanted.items():
            if target != GLOBAL:
                scopes.pop(widest, None)
        wanted.setdefault(GLOBAL, {})[widest] = None


def _order(item: tuple[Target, dict[str, None]]) -> tuple[bool, str, str]:
    (resource, id_), _ = item
    return (resource != "global", resource, id_ or "")
