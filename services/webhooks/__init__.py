"""Webhooks (Standard Webhooks): what keyledger tells the outside world about its keys, signed and delivered
at least once, in store order, from the notices table (``webhook_messages``).

==================  ====================================================================================
module              owns
==================  ====================================================================================
``endpoints``       registering and managing endpoints (the API, the dashboard and the CLI call it)
``feeder``          the store's key events → lifecycle notices and the keys' expiry deadlines
``expiry``          due deadlines → key.expiring, key.expired and key.grace_ended notices
``dispatcher``      one task per active endpoint: deliveries in order, retries, failing endpoints
``transport``       one attempt: resolve, check every address, connect to the checked one, POST
``worker``          the ``webhooks`` worker role: the three above in one process (Postgres only)
==================  ====================================================================================

The pure parts (signing, payload, retry schedule, expiry thresholds, address policy) are
``keyledger.domain.webhooks`` and ``keyledger.domain.webhook_urls``. May import: domain, projections, the
adapters (``storage``) and the kernel; no other application package (the key view the notices carry is
passed in by ``bootstrap``).
"""
