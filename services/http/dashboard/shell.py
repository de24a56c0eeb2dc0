"""Shell commands the dashboard shows for copying: every value in them is quoted for a POSIX shell here,
so a website id, a host name or a secret can only ever be one argument, never more shell.

The pages show these strings as they are; the templates escape them for HTML on top (autoescape).
"""

from __future__ import annotations

import json
import shlex

from keyledger.domain.key import KeyState

# A header whose value the shell expands from the caller's environment: fixed text, double-quoted on purpose.
VERIFY_CREDENTIAL_HEADER = '"Authorization: Bearer $VERIFY_CREDENTIAL"'
CONTINUATION = " \\\n  "


def command(*lines: list[str]) -> str:
    """``lines`` of words as one command: each word quoted, lines joined by backslash-newline continuations.

    A word wrapped in :class:`Raw` goes in as written (fixed text of this module only, never a value)."""
    return CONTINUATION.join(" ".join(word if isinstance(word, Raw) else shlex.quote(word) for word in line)
                             for line in lines)


class Raw(str):
    """Shell text written here, put in a command as it is (e.g. a ``$VARIABLE`` to expand)."""

    __slots__ = ()


def verify_body(state: KeyState, secret: str) -> dict[str, str]:
    """A ``POST /v1/verify`` body this key passes: its first grant, on its resource."""
    entry = next((e for e in state.access if e.scopes), None)
    body = {"key": secret, "scope": entry.scopes[0] if entry else "read:data"}
    if entry is not None and entry.resource == "website" and entry.id is not None:
        body["website_id"] = entry.id
    elif entry is not None and entry.resource != "global":
        body["data"] = entry.resource
    return body


def verify_example(state: KeyState, secret: str, origin: str) -> str:
    """The ``curl`` call that verifies the new key against this server, ready to paste into a shell.

    The JSON body is one quoted word (JSON escapes every control character, so it is one line); the caller's
    verify credential comes from ``$VERIFY_CREDENTIAL``."""
    return command(["curl", "-s", "-X", "POST", f"{origin}/v1/verify"],
                   ["-H", Raw(VERIFY_CREDENTIAL_HEADER), "-H", "content-type: application/json"],
                   ["-d", json.dumps(verify_body(state, secret))])


def audit_verify_examples(origin: str) -> dict[str, str]:
    """The ``keyledger audit verify`` calls the audit page shows, against this server or offline."""
    export = "keyledger-audit.ndjson"
    return {
        "server": command(["keyledger", "audit", "verify", export, "--server", origin]),
        "offline": command(["keyledger", "audit", "verify", export, "--public-key", Raw("BASE64_KEY")]),
        "since": command(["keyledger", "audit", "verify", export, "--server", origin,
                          "--since-manifest", "earlier-export.ndjson"]),
    }
