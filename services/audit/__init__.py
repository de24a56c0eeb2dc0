"""The audit trail: usage events batched out of API processes (emitter), stored by the audit sink,
exported with a hash chain, and exports verified.

May import: domain, services.storage, services.messaging.
"""
