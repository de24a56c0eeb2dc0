"""keyledger's verify path inside another Python service: no network hop (``InProcessVerifier``).

May import every package of services but the other entry points (cli, http); its last imports of http
(the verify answer and its helpers) go once it adapts the one verify flow (``.importlinter`` lists them).
"""
