"""The per-client failure throttle, on an injected clock (Unix seconds)."""

from keyledger.services.verify.throttles import FailureThrottle, RateDecision


def test_failure_throttle_blocks_past_the_limit_until_the_window_ends() -> None:
    now = [1_000_000_060.0]  # window [1_000_000_020, 1_000_000_080)
    throttle = FailureThrottle(3, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.refusal("198.51.100.1") is None
        throttle.record("198.51.100.1")
    refused = throttle.refusal("198.51.100.1")
    assert refused == RateDecision(allowed=False, limit=3, remaining=0, reset=1_000_000_080, retry_after=20)
    assert refused.headers() == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0",
                                 "X-RateLimit-Reset": "1000000080", "Retry-After": "20"}
    assert throttle.refusal("198.51.100.2") is None
    now[0] = 1_000_000_080.0
    assert throttle.refusal("198.51.100.1") is None


def test_the_client_map_stays_bounded_and_keeps_blocked_clients() -> None:
    throttle = FailureThrottle(3, clock=lambda: 1_000_000_060.0, max_clients=100)
    for _ in range(3):
        throttle.record("203.0.113.66")  # blocked
    for i in range(10_000):  # a caller naming ever new client addresses
        throttle.record(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
    assert len(throttle._counts) <= 100
    assert throttle.refusal("203.0.113.66") is not None
