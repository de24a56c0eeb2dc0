"""Key lifecycle commands: load a stream, ``domain.decide``, append; the only place secrets are born.

Owns the command handlers (``KeyService``), argon2 hashing, the bootstrap admin key and how a
key is shown (views). May import: domain, projections, services.storage, config, clock.
"""
