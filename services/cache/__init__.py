"""The key cache read model and the events that feed it: the relay (store → JetStream), the projector
(JetStream → Postgres table), the live in-memory cache of API processes, the replica roll commands wait
for, and replay (store → fresh table, swapped in).

May import: domain, projections, the adapters, observe and the kernel; no other application package.
"""
