"""The verify index of imported keys: a key brought in from another service is presented with that
service's token, which names no keyledger key id; the index finds its key by the first 16 hex digits of the
token's SHA-256 (``KeyState.import_lookup``), a dict lookup. The entry outlives the re-hash: after it, the
argon2id hash decides, as for any key."""

from __future__ import annotations

from collections.abc import Iterable

from keyledger.domain.key import KeyState

ImportedIndex = dict[str, str]  # import lookup → key id


def note_imported(index: ImportedIndex, state: KeyState) -> None:
    """Enter ``state`` in ``index`` if it is an imported key (in place)."""
    if state.import_lookup is not None:
        index[state.import_lookup] = state.key_id


def imported_index(states: Iterable[KeyState]) -> ImportedIndex:
    """The index of every imported key among ``states``."""
    index: ImportedIndex = {}
    for state in states:
        note_imported(index, state)
    return index
