"""How keys are shown: top-level scopes are the global grant, the rest are resource entries."""

from keyledger.domain.access import AccessEntry
from keyledger.services.keys.views import join_access, split_access


def test_top_level_scopes_are_global_grants() -> None:
    site = AccessEntry(resource="website", id="w", scopes=("read:data",))
    entries = join_access(["read:data", "admin:apikeys"], [site])
    assert entries[0] == AccessEntry(resource="global", scopes=("read:data", "admin:apikeys"))
    assert split_access(entries) == (["admin:apikeys", "read:data"],
                                     [{"resource": "website", "id": "w", "scopes": ["read:data"]}])
