"""The verify path: verifier (token → cached key → remembered digest or argon2 → access decision),
the rate limiter (leases shared across replicas), failure throttles and last-used tracking.

May import: domain, services.storage, services.keys, config, clock.
"""
