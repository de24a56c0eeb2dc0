"""NATS JetStream: the only package that imports nats.

Owns the connection (``Bus``), stream setup, durable pull consumers (``Consumer``/``Delivery``),
the live feed of key events (``EventFeed``), usage publishing and the relay (store → stream).
No nats type leaves this package. May import: domain, services.config, services.storage.
"""
