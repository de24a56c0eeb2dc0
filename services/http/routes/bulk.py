"""``POST /v1/keys/bulk``: revoke, tag or untag many keys in one call (needs ``admin:apikeys``).

Each key gets its own command and event, and its own result: a key that cannot be changed is reported and
the others are still changed (never silently partial). An organization's admin names and selects only its
organization's keys.
"""

from __future__ import annotations

import msgspec
from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.domain.token import is_key_id
from keyledger.services.http.errors import ApiError, error_responses, forbidden
from keyledger.services.http.guards import SECURITY, admin_guard
from keyledger.services.http.ports import KeyDirectory
from keyledger.services.http.schemas import BulkRequest, BulkResponse
from keyledger.services.http.telemetry import timed
from keyledger.services.keys.bulk import MAX_BULK_KEYS, BulkFilter, BulkOutcome, command_maker, outcome_of, selected
from keyledger.services.keys.service import KeyService

MAX_BULK_BODY = 1024 * 1024  # 10,000 ids and then some


@post("/v1/keys/bulk", status_code=200, middleware=[timed("bulk")], request_max_body_size=MAX_BULK_BODY,
      responses=error_responses(400, 401, 403, 404, 413, 429, 503), guards=[admin_guard], security=SECURITY)
async def bulk_keys(data: JSONBody[BulkRequest], keys: NamedDependency[KeyService],
                    cache: NamedDependency[KeyDirectory], admin: NamedDependency[KeyState],
                    metadata: NamedDependency[Metadata]) -> BulkResponse:
    """Apply ``action`` to the keys ``ids`` names or ``filter`` selects, one event per key changed; 200 with
    every key's result (``failed`` > 0: those keys were refused and left as they were, the others changed).
    A filter matching no key is a 404; more than 10,000 keys, or a bad action argument, a 400; nothing is
    changed then, nor ever with ``dry_run``. Revokes return once every replica holds them."""
    make = command_maker(data.action, data.tags, data.reason)  # a bad tag or reason: 400 before any key
    unseen: dict[str, BulkOutcome] = {}
    if (data.ids is None) == (data.filter is None):
        raise ApiError(400, "VALIDATION_ERROR", "give either ids or a filter")
    if data.ids is not None:
        ids = list(dict.fromkeys(data.ids))
        _within_limit(len(ids), "ids names")
        states: list[KeyState] = []
        for key_id in ids:
            state = cache.get(key_id) if is_key_id(key_id) else None
            if state is None or (admin.organization_id is not None and state.organization_id != admin.organization_id):
                unseen[key_id] = BulkOutcome(id=key_id, ok=False, code="NOT_FOUND",
                                             error=f"key {key_id[:100]} not found")
            else:
                states.append(state)
    else:
        states = _matching(cache, admin, data.filter or BulkFilter())
        ids = [state.key_id for state in states]
    results = await keys.each(states, make, metadata=metadata, dry_run=data.dry_run)
    done = dict(zip((state.key_id for state in states), results, strict=True))
    outcomes = [unseen[key_id] if key_id in unseen else outcome_of(key_id, done[key_id]) for key_id in ids]
    failed = sum(not outcome.ok for outcome in outcomes)
    return BulkResponse(action=data.action, dry_run=data.dry_run, matched=len(outcomes),
                        succeeded=len(outcomes) - failed, failed=failed, results=outcomes)


def _matching(cache: KeyDirectory, admin: KeyState, wanted: BulkFilter) -> list[KeyState]:
    """The keys ``wanted`` selects among those ``admin`` may see; 400 for an empty filter or too many keys, 404
    when none matches."""
    if wanted.is_empty():
        raise ApiError(400, "VALIDATION_ERROR", "filter needs at least one of organization_id, tag, owner_id, "
                                                "created_before")
    if wanted.created_before is not None and wanted.created_before.utcoffset() is None:
        raise ApiError(400, "VALIDATION_ERROR", "filter.created_before must carry a time zone")
    if admin.organization_id is not None:
        if wanted.organization_id not in (None, admin.organization_id):
            raise forbidden("an organization's admin key can only act on keys of that organization")
        wanted = msgspec.structs.replace(wanted, organization_id=admin.organization_id)
    found = selected(cache.states(wanted.organization_id), wanted, caller=admin.key_id)
    if not found:
        raise ApiError(404, "NOT_FOUND", "no key matches the filter (revoked keys and the calling key are never "
                                         "selected); nothing was changed")
    _within_limit(len(found), "the filter selects")
    return found


def _within_limit(count: int, what: str) -> None:
    if count > MAX_BULK_KEYS:
        raise ApiError(400, "VALIDATION_ERROR", f"{what} {count:,} keys; at most {MAX_BULK_KEYS:,} per call "
                                                "(narrow it, e.g. with created_before)")


BULK_ROUTES = [bulk_keys]
