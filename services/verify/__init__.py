"""The verify path: verifier (token → cached key → remembered digest or argon2 → access decision),
the verify callers, the rate limiter (leases shared across replicas), failure throttles and last-used
tracking.

May import: domain, projections, the adapters, observe and the kernel; no other application package.
"""
