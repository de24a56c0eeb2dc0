"""NATS JetStream: the only package that imports nats.

Owns the connection (``Bus``), stream setup, durable pull consumers (``Consumer``/``Delivery``),
publishing key events (``EventPublisher``) and usage batches, the live feed of key events
(``EventFeed``) and replica announcements. No nats type leaves this package (NATS failures leave
as ``BusError``). May import: domain, projections, observe and the kernel; no other adapter.
"""
