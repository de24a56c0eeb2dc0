"""The HTTP API (Litestar): app factory (its lifespan opens the API process ``bootstrap`` builds), the
components handlers get, dependency providers, authentication guard, errors, request/response Structs,
rate-limit headers, ``routes/`` and the administrator pages (``dashboard/``).

May import every package of services but the other entry points (cli, inprocess). Inside: nothing
imports ``app``; the dashboard may use the API's routes (their visibility rule), never the reverse.
"""
