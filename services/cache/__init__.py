"""The key cache read model: the projector (JetStream → Postgres table), the live in-memory cache
of API processes, and replay (store → fresh table, swapped in).

May import: domain, projections, services.storage, services.messaging.
"""
