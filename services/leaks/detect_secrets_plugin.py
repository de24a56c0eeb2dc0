"""A plugin for Yelp's ``detect-secrets``: keyledger API keys and verify credentials, checksum-validated (like
its GitHub token plugin), so a look-alike string is never reported.

detect-secrets loads plugins from a file path; this module prints its own::

    detect-secrets scan --plugin "$(python -m keyledger.services.leaks.detect_secrets_plugin)"

It looks for ``KEYLEDGER_TOKEN_PREFIX`` (when set), ``kl`` and ``klvc``. Only this module imports
detect-secrets (a tool of the teams that use it, not a dependency of keyledger).
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator

from detect_secrets.plugins.base import RegexBasedDetector

from keyledger.domain.leaks import find_tokens, prefixes_for


def _prefixes() -> tuple[str, ...]:
    return prefixes_for(os.environ.get("KEYLEDGER_TOKEN_PREFIX") or "kl")


class KeyledgerTokenDetector(RegexBasedDetector):
    """keyledger tokens (``kl_…``) and verify credentials (``klvc_…``) whose CRC32 checksum holds."""

    secret_type = "keyledger API key"
    denylist = (re.compile(r"[a-z][a-z0-9]{0,15}_[0-9A-Za-z]{50}"),)  # the shape; analyze_string checks the rest

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        """Every checksum-valid token in ``string``."""
        for found in find_tokens(string, _prefixes()):
            yield found.token


if __name__ == "__main__":
    print(os.path.abspath(__file__))
