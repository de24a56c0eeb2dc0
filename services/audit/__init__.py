"""The audit trail: usage events batched out of API processes (emitter), stored by the audit sink,
exported with a hash chain and a manifest signed with the server's Ed25519 key (signing, notary:
the key, its public keys, each export's chain head), and exports verified.

May import: domain, projections, the adapters, observe and the kernel; no other application package.
Of third parties, cryptography (signing).
"""
