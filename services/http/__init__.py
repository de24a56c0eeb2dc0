"""The HTTP API (Litestar): app factory, the components an API process runs, dependency providers,
authentication guard, errors, request/response Structs, rate-limit headers and ``routes/``.

May import every other services subpackage except cli; nothing imports ``http.app``.
"""
