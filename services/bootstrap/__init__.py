"""The composition root: every process kind is built here from its settings, and nowhere else.

==================  ====================================================================================
module              builds
==================  ====================================================================================
``runtime``         where the servers are (configured, else the embedded stack, started if needed),
                    migrations, the database pool, event store, secret hasher and clock of one process
``roles``           the worker roles by name: each one's NATS user, durable consumer and batch size
``workers``         the relay, the projector and the audit sink, each on a NATS connection of its own
``background``      the work beside a process's answers, started together and stopped together
==================  ====================================================================================

The CLI's processes start here: ``keyledger serve``, ``keyledger run``, each worker role and every
command (an API process's worker roles too, with ``KEYLEDGER_RUN_WORKERS``).
Everything is opened in async context managers and closed when they exit; nothing connects at import
time. The entry points (``http`` with its dashboard, ``cli``, ``inprocess``) may import this package; it
imports every package below them and none of them.
"""
