"""What a confirmed leak does, under ``KEYLEDGER_LEAK_POLICY``:

* ``revoke`` (default): ``key.leak_reported`` and ``key.revoked`` (reason ``leaked: reported by <source> at
  <url>``, actor ``leak-intake``) in one append, which returns once every replica holds it;
* ``notify``: ``key.leak_reported`` only; the key keeps working, a high-severity ``leaked_key`` finding is
  raised (or grown) and a warning is logged;

and a leak of the old secret inside a grace period ends the grace period (the current secret keeps working).
Verify credentials have no event stream: a leaked one is revoked (policy ``revoke``) and logged.
"""

from __future__ import annotations

import logging
from typing import Literal

import msgspec

from keyledger.domain.commands import MAX_LEAK_URL_LENGTH, MAX_REPORTER_LENGTH
from keyledger.domain.errors import ConcurrencyError, KeyRevokedError, ValidationError
from keyledger.domain.findings import LEAKED_KEY, Match
from keyledger.domain.key import KeyState
from keyledger.domain.recorded import Metadata
from keyledger.services.clock import Clock
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.findings import FindingTable
from keyledger.services.storage.verify_credentials import VerifyCredentials
from keyledger.services.verify.callers import VerifyCallers

log = logging.getLogger("keyledger.leaks")

ACTOR = "leak-intake"
POLICIES = ("revoke", "notify")
Which = Literal["current", "previous"]


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """Reported tokens and where they were found (one public request, or one of a code host's entries)."""

    tokens: tuple[str, ...]
    source: str
    url: str = ""
    reporter: str = ""
    client: str = ""  # the reporting client's address (the audit trail's ip)


def _text(value: str | None, limit: int) -> str:
    """Free text from outside fit for the event: control characters dropped, at most ``limit`` characters."""
    return "".join(c for c in value or "" if ord(c) >= 32 and ord(c) != 127)[:limit].strip()


class LeakResponse:
    """Responds to confirmed leaks of keys and verify credentials (see the module's docstring)."""

    def __init__(self, keys: KeyService, credentials: VerifyCredentials, clock: Clock, *, policy: str = "revoke",
                 callers: VerifyCallers | None = None, findings: FindingTable | None = None) -> None:
        if policy not in POLICIES:
            raise ValueError(f"leak policy must be one of {', '.join(POLICIES)}")
        self._keys, self._credentials, self._clock, self._policy = keys, credentials, clock, policy
        self._callers = callers  # this process's verify callers, refreshed at once after a revoke
        self._findings = findings  # where policy notify raises a finding (None: only the log line)

    async def key(self, key_id: str, which: Which, report: Report) -> None:
        """Respond to a leak of the key's current secret, or of its old one inside its grace period."""
        revoke = self._policy == "revoke" and which == "current"
        url, reporter = _text(report.url, MAX_LEAK_URL_LENGTH), _text(report.reporter, MAX_REPORTER_LENGTH)
        metadata = Metadata(actor=ACTOR, ip=report.client or None)
        for _ in range(3):
            try:
                state = await self._keys.report_leak(key_id, source=report.source, url=url, reporter=reporter,
                                                     previous_secret=which == "previous", revoke=revoke,
                                                     metadata=metadata)
                break
            except ConcurrencyError:
                continue  # the key changed meanwhile: read it again
            except (KeyRevokedError, ValidationError) as exc:  # revoked, or the grace period ended, meanwhile
                log.info("leak of key %s reported by %s: nothing to do (%s)", key_id, report.source, exc)
                return
        else:
            log.error("leak of key %s reported by %s could not be recorded: the key kept changing", key_id,
                      report.source)
            return
        if which == "previous":
            log.warning("the old secret of key %s (%s) leaked, reported by %s at %s: its grace period ended; the "
                        "current secret keeps working", key_id, state.start, report.source, url or "-")
        elif revoke:
            log.warning("key %s (%s) leaked, reported by %s at %s: revoked", key_id, state.start, report.source,
                        url or "-")
        else:
            raised = await self._raise_finding(state, report.source, url, reporter)
            log.warning("key %s (%s) leaked, reported by %s at %s: KEYLEDGER_LEAK_POLICY=notify keeps it active; "
                        "rotate or revoke it now (key.leak_reported is in its history and goes to webhooks; %s)",
                        key_id, state.start, report.source, url or "-",
                        f"high-severity finding {raised}" if raised else "no finding raised")

    async def _raise_finding(self, state: KeyState, source: str, url: str, reporter: str) -> str | None:
        """The id of the ``leaked_key`` finding raised (or grown) for the key; None without a findings table."""
        if self._findings is None:
            return None
        match = Match(kind=LEAKED_KEY, subject="", at=self._clock(),
                      evidence={"source": source, "url": url, "reporter": reporter, "start": state.start})
        return (await self._findings.record(match, state.key_id, state.organization_id)).id

    async def credential(self, credential_id: str, report: Report) -> None:
        """Respond to a leak of an active verify credential."""
        if self._policy != "revoke":
            log.warning("verify credential %s leaked, reported by %s at %s: KEYLEDGER_LEAK_POLICY=notify keeps it "
                        "active; revoke it now", credential_id, report.source, _text(report.url, 200) or "-")
            return
        await self._credentials.revoke(credential_id)
        if self._callers is not None:
            await self._callers.start()  # this process refuses it at once; the others within seconds
        log.warning("verify credential %s leaked, reported by %s at %s: revoked", credential_id, report.source,
                    _text(report.url, 200) or "-")
