"""Everything with I/O, one boundary per subpackage (``domain`` and ``projections`` stay pure).

The layers below are the import contract in ``.importlinter`` (checked by ``lint-imports`` in ``make test``).
A package may import ``domain``, ``projections`` and any package of a lower layer; packages of one layer
(``|``) do not import each other, except in the kernel (``:``); no package
cycles, nor module cycles inside a package. Only ``storage`` imports psycopg, only ``messaging`` nats, only
``hashing`` argon2, only ``observe`` prometheus_client; ``devstack`` imports nothing of keyledger.

===============  =====================================================================================
layer            packages and what they own
===============  =====================================================================================
entry points     ``cli``: the ``keyledger`` command |
                 ``http``: the Litestar app, DI providers, the auth gate, errors, schemas, ``routes/``
                 and ``dashboard/`` (the /dashboard pages; the app mounts them, the API's routes
                 never import them) |
                 ``inprocess``: the verify path inside another Python service
composition      ``bootstrap``: the composition root, where every process kind is built from its settings:
                 the servers (the embedded stack when none is configured), the API, the verify side (also
                 the in-process verifier's), each worker role
leaks            ``leaks``: the intake of leak reports (GitHub's signed batches, the public endpoint), the
                 response to a confirmed leak through the key commands, the scanner and the detect-secrets
                 plugin
application      ``keys``: command handlers, the bootstrap admin key, verify credentials, key views, the
                 hygiene report |
                 ``verify``: verifier, verify callers, rate limiter, throttles, last-used |
                 ``cache``: the relay (store → JetStream), projector, live cache, replica roll, replay |
                 ``audit``: usage emitter, audit sink, signed export and its verification |
                 ``watch``: the watch role (suspicious-activity findings from the usage stream), automatic
                 revocation, the rebuild of findings from the usage table
adapters         ``storage``: Postgres (pool, migrations, event store and its in-memory fake, tables) |
                 ``messaging``: NATS JetStream (``Bus``, streams, consumers, publishers, the live feed) |
                 ``devstack``: embedded Postgres + NATS for development and tests |
                 ``hashing``: argon2id for key secrets, SHA-256 for verify credentials
observe          Prometheus metrics, structured logs, the API's sampled gauges
kernel           ``config`` : ``clock`` : ``periodic`` : ``signals`` : ``parent``: settings, time as an
                 input, the periodic loop, signals noted without locks, ending with the parent process
===============  =====================================================================================
"""
