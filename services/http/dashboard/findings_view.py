"""Findings as the dashboard shows them: each kind in words, what its evidence says in one sentence, and a
key's findings for its detail view (what the ``findings`` table says, visible to the signed-in admin)."""

from __future__ import annotations

from typing import Any

from keyledger.domain.findings import KINDS, Finding
from keyledger.domain.key import KeyState
from keyledger.services.storage.findings import FindingFilter, FindingTable

KIND_WORDS = {
    "revoked_key_used": "Revoked or expired key used", "new_network": "Used from a new network",
    "many_networks": "Used from many networks", "secret_guessing": "Wrong secrets for this key",
    "scope_probing": "Scopes or resources probed", "volume_spike": "Unusual volume",
    "leaked_key": "Secret reported leaked",
}
assert set(KIND_WORDS) == set(KINDS)
KEY_FINDINGS_SHOWN = 20  # findings a key's detail view lists (newest first)


def _listed(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) and values else "—"


def evidence_words(finding: Finding) -> str:
    """One sentence of what the latest match of ``finding`` showed."""
    e, ip = finding.evidence, finding.evidence.get("ip") or "an unknown address"
    match finding.kind:
        case "revoked_key_used":
            return f"The {finding.subject} key was presented with its correct secret from {ip}."
        case "new_network":
            if e.get("previously_seen"):
                return (f"Used from {finding.subject} (from {ip}), not seen for over {e.get('window_days')} days: "
                        f"last seen {e.get('previously_seen')}.")
            return f"Used from {finding.subject} (from {ip}) for the first time, after {e.get('uses_before')} uses."
        case "many_networks":
            return (f"Used from {e.get('distinct_networks')} networks within {e.get('window_minutes')} minutes: "
                    f"{_listed(e.get('networks'))}.")
        case "secret_guessing":
            return (f"{e.get('wrong_secrets')} wrong secrets within {e.get('window_minutes')} minutes, "
                    f"the latest from {ip}.")
        case "scope_probing":
            return (f"{e.get('forbidden')} refused requests within {e.get('window_minutes')} minutes, for scopes "
                    f"{_listed(e.get('scopes'))} on {_listed(e.get('resources'))}; the latest from {ip}.")
        case "volume_spike":
            return (f"{e.get('uses')} uses in the hour from {e.get('hour')}, at least {e.get('factor')} times the "
                    f"hourly median of {e.get('hourly_median')}.")
        case "leaked_key":
            where = f" at {e.get('url')}" if e.get("url") else ""
            return (f"Its secret ({e.get('start')}…) was reported leaked by {e.get('source')}{where}; "
                    "KEYLEDGER_LEAK_POLICY=notify keeps it working: rotate or revoke it.")
    return ""


async def key_findings(table: FindingTable | None, admin: KeyState, key_id: str) -> list[Finding]:
    """The newest findings of ``key_id`` that ``admin`` may see (none without a findings table)."""
    if table is None:
        return []
    items, _ = await table.page(FindingFilter(organization_id=admin.organization_id, key_id=key_id),
                                KEY_FINDINGS_SHOWN, None)
    return items
