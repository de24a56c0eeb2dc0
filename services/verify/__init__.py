"""The verify path, and the one verify flow every transport shares (``flow.VerifyFlow``: forwarded-ip
throttle → verifier → rate limit → verdict → the one usage event → last-used; ``call.verify_call``
validates every transport's request; ``answer`` is the answer they all give): the verifier (token →
cached key → remembered digest or argon2 → access decision → the staleness rule), the verify callers,
the rate limiter (leases shared across replicas), failure throttles and last-used tracking.

May import: domain, projections, the adapters, observe and the kernel; no other application package.
"""
