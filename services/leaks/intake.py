"""Leak intake: which reported tokens are live secrets of this deployment (then
:mod:`keyledger.services.leaks.response` responds).

A reported string is first parsed (prefix and checksum, no I/O): anything else is a false positive at once.
A key's token is checked against the key's current secret and, inside a rotation's grace period, the old one
with argon2 under the same bound as verify's cold checks (the process's ``Argon2Queue``); a verify
credential against the SHA-256 digests of the active ones. Public reports wait in a bounded queue and are
checked beside the answers, which never wait on (nor tell) what they find.
"""

from __future__ import annotations

import asyncio
import logging

from keyledger.domain import token
from keyledger.domain.errors import Busy, KeyNotFound
from keyledger.domain.key import KeyState
from keyledger.domain.leaks import parse_reported
from keyledger.services.clock import Clock, epoch
from keyledger.services.hashing import Argon2Queue, SecretHasher, credential_digest
from keyledger.services.keys.service import KeyService
from keyledger.services.leaks.github import GitHubKeys
from keyledger.services.leaks.response import ACTOR, LeakResponse, Report, Which
from keyledger.services.storage.verify_credentials import VerifyCredentials
from keyledger.services.verify.throttles import FailureThrottle, RateDecision

log = logging.getLogger("keyledger.leaks")

_ADMISSION_TRIES = 200  # a full argon2 queue is waited for this many times 50 ms, then Busy


class LeakIntake:
    """Confirms reported tokens and has ``response`` respond to the confirmed ones."""

    def __init__(self, keys: KeyService, hasher: SecretHasher, queue: Argon2Queue, credentials: VerifyCredentials,
                 clock: Clock, response: LeakResponse, *, prefix: str = token.DEFAULT_PREFIX,
                 github: GitHubKeys | None = None, reports_per_minute: int = 10, pending: int = 100) -> None:
        self._keys, self._hasher, self._queue, self._credentials = keys, hasher, queue, credentials
        self._clock, self._response, self._prefix = clock, response, prefix
        self._pending: asyncio.Queue[Report] = asyncio.Queue(maxsize=pending)
        self.github = github or GitHubKeys(None)  # checks the code host's signatures
        self._per_client = FailureThrottle(reports_per_minute, clock=epoch(clock))

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
        finally:
            stopping.cancel()

    async def confirm(self, reported: str, report: Report) -> bool:
        """Whether ``reported`` is a live secret here; if so, respond to its leak."""
        parsed = parse_reported(reported, self._prefix)
        if parsed is None:
            return False
        if parsed.prefix == token.CREDENTIAL_PREFIX:
            active = await self._credentials.active()
            if active.get(credential_digest(reported)) != parsed.key_id:
                return False
            await self._response.credential(parsed.key_id, report)
            return True
        try:
            state, _ = await self._keys.history(parsed.key_id)
        except KeyNotFound:
            return False
        which = await self._match(state, reported, report.client)
        if which is None:
            return False
        await self._response.key(state.key_id, which, report)
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
