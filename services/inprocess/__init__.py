"""keyledger's verify path inside another Python service: no network hop (``InProcessVerifier``).

May import: domain, projections, services.storage, services.messaging, services.cache, services.verify,
services.audit, services.keys, services.http (the verify answer and its helpers), config, clock.
"""
