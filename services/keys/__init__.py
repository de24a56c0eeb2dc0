"""Key lifecycle commands: load a stream, ``domain.decide``, append; the only place secrets are born.

Owns the command handlers (``KeyService``), the bootstrap admin key, issuing verify credentials, how a
key is shown (views) and the hygiene report (``hygiene``, shown as ``hygiene_views`` says).

May import: domain, projections, the adapters, observe and the kernel; no other application package.
"""
