"""The keys list's bulk revoke: the checked keys are shown on a confirmation page, and revoked (each its own
event, as ``POST /v1/keys/bulk`` does) only once the administrator types the exact phrase, e.g.
``revoke 12 keys``. Every key's outcome is shown after."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.response import Template

from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.domain.token import is_key_id
from keyledger.services.http.dashboard.routes import _form, _page, signed_in
from keyledger.services.http.ports import KeyDirectory
from keyledger.services.keys.bulk import MAX_BULK_KEYS, BulkOutcome, command_maker, outcome_of
from keyledger.services.keys.service import KeyService


def phrase(count: int) -> str:
    """What the administrator types to revoke ``count`` keys: ``revoke 1 key``, ``revoke 12 keys``."""
    return f"revoke {count} key{'' if count == 1 else 's'}"


def _checked(form: Any, cache: KeyDirectory, admin: KeyState) -> list[KeyState]:
    """The checked keys this admin may see and that are not revoked yet, in the order checked."""
    ids = [i for i in dict.fromkeys(form.getall("key_id", [])) if isinstance(i, str) and is_key_id(i)]
    found = []
    for key_id in ids[:MAX_BULK_KEYS]:
        state = cache.get(key_id)
        if state is not None and state.revoked_at is None and (
                admin.organization_id is None or state.organization_id == admin.organization_id):
            found.append(state)
    return found


@post("/keys/bulk-revoke", guards=[signed_in], status_code=200)
async def bulk_revoke(request: Request[Any, Any, Any], admin: NamedDependency[KeyState],
                      cache: NamedDependency[KeyDirectory], keys: NamedDependency[KeyService],
                      metadata: NamedDependency[Metadata]) -> Template:
    """From the keys list: confirm the checked keys' revocation; with the typed phrase, revoke them."""
    form = await _form(request)
    states = _checked(form, cache, admin)
    typed, reason = form.get("confirm"), form.get("reason")
    reason = reason.strip()[:500] if isinstance(reason, str) else ""
    context: dict[str, Any] = {"states": states, "phrase": phrase(len(states)), "reason": reason, "error": None,
                               "results": None}
    if not states:
        context["error"] = "Select at least one active key in the list first."
        return _page(request, "bulk_revoke.html", 400, **context)
    if typed is None:  # from the list: ask first
        return _page(request, "bulk_revoke.html", **context)
    if not isinstance(typed, str) or typed.strip() != context["phrase"]:
        context["error"] = f"Type exactly “{context['phrase']}” to revoke these keys. Nothing was revoked."
        return _page(request, "bulk_revoke.html", 400, **context)
    results = await keys.each(states, command_maker("revoke", (), reason), metadata=metadata)
    outcomes: list[BulkOutcome] = [outcome_of(s.key_id, r) for s, r in zip(states, results, strict=True)]
    context["results"] = [(state, outcome) for state, outcome in zip(states, outcomes, strict=True)]
    context["failed"] = sum(not outcome.ok for outcome in outcomes)
    return _page(request, "bulk_revoke.html", 200 if not context["failed"] else 409, **context)


BULK_PAGES = [bulk_revoke]
