"""The composition root: every process kind is built here from its settings, and nowhere else.

==================  ====================================================================================
module              builds
==================  ====================================================================================
``runtime``         where the servers are (configured, else the embedded stack, started if needed),
                    migrations, the database pool, event store, secret hasher and clock of one process
``roles``           the worker roles by name: each one's NATS user, durable consumer and batch size
``workers``         the relay, the projector and the audit sink, each on a NATS connection of its own
``verify_side``     the verify side (live key cache, replica roll, verifier, rate limiter, forwarded-ip
                    throttle, last-used tracker, usage emitter), for an API process and for the
                    in-process verifier (``open_local_verify_side``)
``api``             an API process: the verify side, the command side, the audit and dashboard reads
                    (``create_app``'s lifespan opens it; the routes and the dashboard are ``http``'s)
``background``      the work beside a process's answers, started together and stopped together
==================  ====================================================================================

Every process starts here: ``keyledger serve`` (its API workers through ``create_app``, its supervised
relay, projector and audit sink), ``keyledger run``, the in-process verifier and every CLI command.
Everything is opened in async context managers and closed when they exit; nothing connects at import
time. The entry points (``http`` with its dashboard, ``cli``, ``inprocess``) may import this package; it
imports every package below them and none of them.
"""
