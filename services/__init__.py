"""Everything with I/O, one boundary per subpackage (``domain`` and ``projections`` stay pure).

==============  ===========================================================  ==============================
subpackage      owns                                                         may import (besides stdlib, msgspec)
==============  ===========================================================  ==============================
``storage``     the only psycopg importer: pool (``Database``), error         domain, projections, config,
                mapping (``StorageError``), migrations, event store, read-   clock
                model tables, usage table, audit queries, rate windows
``messaging``   the only nats importer: ``Bus``, streams, consumers, the     domain, config, storage
                live feed, usage publishing, the relay
``keys``        command handlers, secret hashing, bootstrap, key views       domain, projections, storage,
                                                                             config, clock
``cache``       projector, live in-memory cache, replay                      domain, projections, storage,
                                                                             messaging
``verify``      verifier, rate limiter, failure throttles, last-used         domain, storage, keys, config
``audit``       usage emitter, audit sink, signed export, verification       domain, storage, messaging
``http``        Litestar app, DI providers, auth guard, errors, schemas,     everything above (not cli)
                routes, the components an API process runs
``cli``         the ``keyledger`` command                                    everything above
``devstack``    embedded Postgres + NATS for development and tests           stdlib only
==============  ===========================================================  ==============================

``config`` (settings), ``clock`` (time as an input) and ``runtime`` (wiring shared by every
process) sit at the top. tests/unit/test_layout.py enforces the psycopg/nats rule and that
there are no import cycles.
"""
