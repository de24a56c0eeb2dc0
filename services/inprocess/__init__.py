"""keyledger's verify path inside another Python service: no network hop (``InProcessVerifier``), a thin
adapter over the one verify flow (``services.verify.flow``).

May import every package of services but the other entry points (cli, http).
"""
