"""The hygiene report built from key states and what storage reads (an in-memory stand-in here): only active
keys, each with its issues and suggestion; what it remembers between reports never changes an answer (a
report of a long-lived builder equals a fresh builder's, whatever changed and whenever); its JSON is the JSON
msgspec gives."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec

from keyledger.domain.access import AccessEntry
from keyledger.domain.key import KeyState
from keyledger.domain.least_privilege import Use
from keyledger.services.keys.hygiene import HygieneReports
from keyledger.services.keys.hygiene_views import HygieneReport

NOW = datetime(2030, 6, 1, tzinfo=UTC)
GLOBAL = (AccessEntry(resource="global", scopes=("read:data", "write:data", "read:export")),)


class MemoryUsage:
    """What ``storage.usage_grants.KeyUsage`` reads, held in memory: uses with their times, last uses, rotations."""

    def __init__(self) -> None:
        self.uses: dict[str, dict[Use, datetime]] = {}
        self.last_used: dict[str, datetime] = {}
        self.rotated: dict[str, datetime] = {}
        self.rotation_reads = 0

    async def read(self, key_ids: Sequence[str], since: datetime) -> list[tuple[str, str | None, datetime]]:
        rows = []
        for key_id in sorted(set(self.uses) | set(self.last_used)):
            recent = sorted((use for use, at in self.uses.get(key_id, {}).items() if at > since),
                            key=lambda use: (use.scope, use.website_id or "", use.data or ""))
            times = [at for at in self.uses.get(key_id, {}).values() if at > since]
            if key_id in self.last_used:
                times.append(self.last_used[key_id])
            text = "\x1e".join(f"{u.scope}\x1f{u.website_id or ''}\x1f{u.data or ''}" for u in recent) or None
            if times:
                rows.append((key_id, text, max(times)))
        return rows

    async def rotations(self, key_ids: Sequence[str] | None) -> dict[str, datetime]:
        self.rotation_reads += 1
        return {k: at for k, at in self.rotated.items() if key_ids is None or k in key_ids}


def key(key_id: str, access: tuple[AccessEntry, ...] = GLOBAL, created: datetime = NOW - timedelta(days=10),
        expires: datetime | None = None, revoked: bool = False, version: int = 1) -> KeyState:
    return KeyState(key_id=key_id, version=version, name=key_id, organization_id=None, access=access,
                    expires_at=expires, secret_hash="$argon2id$placeholder", prefix="kl", start=f"kl_{key_id}",
                    created_at=created, updated_at=created, revoked_at=created if revoked else None)


def as_json(report: HygieneReport) -> object:
    return msgspec.json.decode(msgspec.json.encode(report))


async def test_active_keys_with_their_issues_and_suggestions() -> None:
    usage = MemoryUsage()
    usage.uses["k1"] = {Use("read:data", "site-a"): NOW - timedelta(days=1)}
    usage.rotated["k2"] = NOW - timedelta(days=2)
    states = [key("k2", created=NOW - timedelta(days=200)), key("k1"), key("k3", revoked=True),
              key("k4", expires=NOW - timedelta(seconds=1)), key("k5", expires=NOW + timedelta(days=3))]
    reports = HygieneReports(usage)
    report = await reports.report(states, NOW)
    assert [item.id for item in report.items] == ["k1", "k2", "k5"]  # active ones, by id
    k1, k2, k5 = report.items
    assert k1.issues == ("no_expiry", "overprivileged") and k1.last_used_at == NOW - timedelta(days=1)
    assert k1.suggestion is not None and msgspec.to_builtins(k1.suggestion) == {
        "patch": {"scopes": [], "access": [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]},
        "unused_grants": [{"resource": "global", "scopes": ["read:data", "read:export", "write:data"]}]}
    assert (k2.issues, k2.age_days, k2.last_rotated_at) == (("unused", "no_expiry"), 200, NOW - timedelta(days=2))
    assert k5.issues == ("expiring",) and k5.suggestion is None
    assert report.summary == {"keys": 3, "unused": 1, "not_rotated": 0, "expiring": 1, "no_expiry": 2,
                              "overprivileged": 1}
    assert reports.encode(report) == msgspec.json.encode(report)


async def test_rotations_are_read_again_only_when_the_store_moved() -> None:
    usage = MemoryUsage()
    reports = HygieneReports(usage)
    for position in (7, 7, 7):
        await reports.report([key("k1")], NOW, position=position)
    assert usage.rotation_reads == 1
    usage.rotated["k1"] = NOW
    assert (await reports.report([key("k1")], NOW, position=8)).items[0].last_rotated_at == NOW
    await reports.report([key("k1")], NOW)  # position unknown (the CLI): read every time
    assert usage.rotation_reads == 3


async def test_what_is_remembered_never_changes_an_answer() -> None:
    rng = random.Random(5)
    usage = MemoryUsage()
    long_lived = HygieneReports(usage)
    sites = ["site-a", "site-b", "site-c"]
    grants = [GLOBAL, (AccessEntry(resource="website", id="site-a", scopes=("read:data", "write:data")),),
              (AccessEntry(resource="error_data", scopes=("read:data",)),
               AccessEntry(resource="global", scopes=("rate:premium", "write:data")))]
    states = {f"k{n}": key(f"k{n}", grants[n % 3], created=NOW - timedelta(days=rng.randrange(200)),
                           expires=rng.choice([None, NOW + timedelta(days=rng.randrange(1, 90))])) for n in range(12)}
    now, position = NOW, 0  # the store's position: a rotation and a change of access are events
    for _ in range(60):
        now += rng.choice([timedelta(seconds=1), timedelta(hours=7), timedelta(days=3), timedelta(days=29)])
        for _ in range(rng.randrange(4)):
            key_id = rng.choice(list(states))
            match rng.randrange(4):
                case 0:  # a use
                    use = Use(rng.choice(["read:data", "write:data"]), rng.choice([None, *sites]),
                              rng.choice([None, "error_data"]))
                    usage.uses.setdefault(key_id, {})[use] = now
                case 1:
                    usage.last_used[key_id] = now
                case 2:
                    usage.rotated[key_id] = now
                    position += 1
                case _:  # a change of access: a new state
                    position += 1
                    old = states[key_id]
                    states[key_id] = key(key_id, rng.choice(grants), created=old.created_at, expires=old.expires_at,
                                         version=old.version + 1)
        known = rng.choice([position, None])
        remembered = await long_lived.report(list(states.values()), now, position=known)
        fresh = await HygieneReports(usage).report(list(states.values()), now, position=known)
        assert as_json(remembered) == as_json(fresh), now
        assert long_lived.encode(remembered) == msgspec.json.encode(remembered)
