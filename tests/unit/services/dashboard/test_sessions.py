"""Dashboard sessions: random ids looked up by digest, a fresh id at sign-in, idle and absolute expiry,
a bounded table."""

from keyledger.services.dashboard.sessions import IDLE_SECONDS, MAX_AGE_SECONDS, SessionStore


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sign_in_replaces_the_session_and_its_csrf_token() -> None:
    store = SessionStore(clock=Ticks())
    anonymous_id, anonymous = store.open()
    signed_id, signed = store.sign_in(anonymous_id, "kl_secret", "key1", "kl_key1start")
    assert signed_id != anonymous_id and signed.csrf != anonymous.csrf
    assert store.get(anonymous_id) is None and store.get(signed_id) is signed
    assert "kl_secret" not in repr(signed) and "kl_secret" not in str(signed)
    assert signed.csrf_matches(signed.csrf) and not signed.csrf_matches(anonymous.csrf)
    assert not signed.csrf_matches(None) and not signed.csrf_matches("")


def test_sessions_end_when_idle_or_old() -> None:
    ticks = Ticks()
    store = SessionStore(clock=ticks)
    session_id, _ = store.sign_in(None, "kl_a", "key1", "s")
    ticks.now += IDLE_SECONDS - 1
    assert store.get(session_id) is not None  # each use restarts the idle time
    ticks.now += IDLE_SECONDS - 1
    assert store.get(session_id) is not None
    ticks.now += IDLE_SECONDS + 1
    assert store.get(session_id) is None and len(store) == 0
    old_id, _ = store.sign_in(None, "kl_a", "key1", "s")
    for _ in range(MAX_AGE_SECONDS // (IDLE_SECONDS - 1) + 1):
        ticks.now += IDLE_SECONDS - 1
        store.get(old_id)
    assert store.get(old_id) is None  # kept busy, it still ends after the absolute limit


def test_the_table_is_bounded_and_keys_end_all_their_sessions() -> None:
    store = SessionStore(clock=Ticks(), limit=3)
    first, _ = store.sign_in(None, "kl_a", "key1", "s")
    second, _ = store.sign_in(None, "kl_a", "key1", "s")
    for _ in range(2):
        store.open()
    assert len(store) == 3 and store.get(first) is None  # the oldest went first
    assert store.end_key("key1") == 1 and store.get(second) is None
    assert store.get("x" * 500) is None and store.get(None) is None
