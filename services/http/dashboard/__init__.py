"""The administrator dashboard (Settings → API Keys) under ``/dashboard``: server-rendered pages (Jinja
templates and a little vendored JavaScript, shipped as package data) over the HTTP API's own command
handlers, queries and access rules. Sign-in with an ``admin:apikeys`` key opens a server-side session;
every request re-checks that key through the API's gate.

Part of the HTTP entry point: may import the rest of ``http`` (gate, errors, providers, the keys routes'
visibility rule) and every package below the entry points; only ``http.app`` imports it (to mount it).
"""
