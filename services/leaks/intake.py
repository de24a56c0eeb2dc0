"""Leak intake: which reported tokens are real secrets of this deployment, and what a confirmed leak does.

A reported string is first parsed (prefix and checksum, no I/O): anything else is a false positive at once.
A key's token is checked against the key's current secret and, inside a rotation's grace period, the old one
with argon2 under the same bound as verify's cold checks (the process's ``Argon2Queue``); a verify
credential against the SHA-256 digests of the active ones. A confirmed leak, under ``KEYLEDGER_LEAK_POLICY``:

* ``revoke`` (default): ``key.leak_reported`` and ``key.revoked`` (reason ``leaked: reported by <source> at
  <url>``, actor ``leak-intake``) in one append, which returns once every replica holds it;
* ``notify``: ``key.leak_reported`` only; the key keeps working, a high-severity ``leaked_key`` finding is
  raised (or grown) and a warning is logged;

and a leak of the old secret inside a grace period ends the grace period (the current secret keeps working).
Verify credentials have no event stream: a leaked one is revoked (policy ``revoke``) and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Literal

import msgspec

from keyledger.domain import token
from keyledger.domain.commands import MAX_LEAK_URL_LENGTH, MAX_REPORTER_LENGTH
from keyledger.domain.errors import Busy, ConcurrencyError, KeyNotFound, KeyRevokedError, ValidationError
from keyledger.domain.findings import LEAKED_KEY, Match
from keyledger.domain.key import KeyState
from keyledger.domain.leaks import parse_reported
from keyledger.domain.recorded import Metadata
from keyledger.services.clock import Clock, epoch
from keyledger.services.hashing import Argon2Queue, SecretHasher, credential_digest
from keyledger.services.keys.service import KeyService
from keyledger.services.leaks.github import GitHubKeys
from keyledger.services.storage.findings import FindingTable
from keyledger.services.storage.verify_credentials import VerifyCredentials
from keyledger.services.verify.callers import VerifyCallers
from keyledger.services.verify.throttles import FailureThrottle, RateDecision

log = logging.getLogger("keyledger.leaks")

ACTOR = "leak-intake"
POLICIES = ("revoke", "notify")
Which = Literal["current", "previous"]
_ADMISSION_TRIES = 200  # a full argon2 queue is waited for this many times 50 ms, then Busy


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


class LeakIntake:
    """Confirms reported tokens and responds to the confirmed ones (see the module's docstring)."""

    def __init__(self, keys: KeyService, hasher: SecretHasher, queue: Argon2Queue, credentials: VerifyCredentials,
                 clock: Clock, *, prefix: str = token.DEFAULT_PREFIX, policy: str = "revoke",
                 callers: VerifyCallers | None = None, github: GitHubKeys | None = None,
                 findings: FindingTable | None = None,
                 reports_per_minute: int = 10, pending: int = 100) -> None:
        if policy not in POLICIES:
            raise ValueError(f"leak policy must be one of {', '.join(POLICIES)}")
        self._keys, self._hasher, self._queue, self._credentials = keys, hasher, queue, credentials
        self._clock, self._prefix, self._policy, self._callers = clock, prefix, policy, callers
        self._pending: asyncio.Queue[Report] = asyncio.Queue(maxsize=pending)
        self.github = github or GitHubKeys(None)  # checks the code host's signatures
        self._findings = findings  # where policy notify raises a finding (None: only the log line)
        self._per_client = FailureThrottle(reports_per_minute, clock=epoch(clock))
        self.handled = 0  # public reports handled (for tests and metrics)

    async def confirm_all(self, report: Report) -> list[bool]:
        """For each reported token (in order), whether it is a live secret of this deployment; each confirmed
        one is responded to before this returns."""
        seen: dict[str, bool] = {}
        for reported in report.tokens:
            if reported not in seen:
                seen[reported] = await self.confirm(reported, report)
        return [seen[reported] for reported in report.tokens]

    def admit(self, client: str) -> RateDecision | None:
        """Count one public report from ``client``; the refusal (429) when it sent its share this minute."""
        refusal = self._per_client.refusal(client)
        if refusal is None:
            self._per_client.record(client)
        return refusal

    def enqueue(self, report: Report) -> bool:
        """Queue a public report for :meth:`run` (its answer must not wait on, or tell, what it finds); False
        when too many are waiting (the report is dropped and logged)."""
        try:
            self._pending.put_nowait(report)
        except asyncio.QueueFull:
            log.warning("leak reports are arriving faster than they are checked: a report of %d tokens from %s "
                        "was dropped", len(report.tokens), report.client or "unknown")
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Check the queued public reports until ``stop``."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getting = asyncio.create_task(self._pending.get())
                await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    return
                try:
                    await self.confirm_all(getting.result())
                except Exception:  # a bad report (or an outage) must not end the intake
                    log.exception("checking a leak report failed")
                self.handled += 1
        finally:
            stopping.cancel()

    async def confirm(self, reported: str, report: Report) -> bool:
        """Whether ``reported`` is a live secret here; if so, respond to its leak."""
        parsed = parse_reported(reported, self._prefix)
        if parsed is None:
            return False
        if parsed.prefix == token.CREDENTIAL_PREFIX:
            return await self._credential(reported, parsed.key_id, report)
        try:
            state, _ = await self._keys.history(parsed.key_id)
        except KeyNotFound:
            return False
        which = await self._match(state, reported, report.client)
        if which is None:
            return False
        await self._respond(state.key_id, which, report)
        return True

    async def _match(self, state: KeyState, reported: str, client: str) -> Which | None:
        now = self._clock()
        hashes: list[tuple[Which, str]] = [("current", state.secret_hash)]
        if state.previous_hash is not None and state.previous_secret_valid(now):
            hashes.append(("previous", state.previous_hash))
        for which, secret_hash in hashes:
            if await self._verify(secret_hash, reported, client):
                return which
        return None

    async def _verify(self, secret_hash: str, reported: str, client: str) -> bool:
        """One argon2 check inside the process's bound; a full queue is waited for a while, then Busy."""
        caller = f"{ACTOR}:{client}"
        for _ in range(_ADMISSION_TRIES):
            if self._queue.admit(caller) is None:
                break
            await asyncio.sleep(0.05)
        else:
            raise Busy("too much argon2 work in progress to check the reported tokens; retry")
        try:
            return await self._hasher.verify(secret_hash, reported)
        finally:
            self._queue.release(caller)

    async def _respond(self, key_id: str, which: Which, report: Report) -> None:
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

    async def _credential(self, reported: str, credential_id: str, report: Report) -> bool:
        active = await self._credentials.active()
        if active.get(credential_digest(reported)) != credential_id:
            return False
        if self._policy != "revoke":
            log.warning("verify credential %s leaked, reported by %s at %s: KEYLEDGER_LEAK_POLICY=notify keeps it "
                        "active; revoke it now", credential_id, report.source, _text(report.url, 200) or "-")
            return True
        await self._credentials.revoke(credential_id)
        if self._callers is not None:
            await self._callers.start()  # this process refuses it at once; the others within seconds
        log.warning("verify credential %s leaked, reported by %s at %s: revoked", credential_id, report.source,
                    _text(report.url, 200) or "-")
        return True


def tokens_of(values: Sequence[object]) -> tuple[str, ...]:
    """The strings among reported values (anything else is no token)."""
    return tuple(value for value in values if isinstance(value, str))
